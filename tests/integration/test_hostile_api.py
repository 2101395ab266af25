"""A hostile user against the shared API (issue 23, the API side) where the case needs a
server of its own: the single user of a server is its operator, and a real worker's host
and pid stay hidden from a user.

Every other API case (M2, M3, M4, L1, L2) runs against the one measured server process
of test_hostile_suite.py.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import psycopg
import pytest

from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import TwoUserIdentity, simulate_spec, start_worker, wait_for

TWO_USERS = {"ServerApp": {"identity_provider_class": TwoUserIdentity}}


def _sql(database_url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def _strings(value: Any) -> Any:
    """Every string value (and number, as text) in a JSON document."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        yield from value
        for v in value.values():
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


# ---- L1: operators ------------------------------------------------------------------------
async def test_the_single_user_of_a_server_is_its_operator(api) -> None:
    code, text = await api("GET", "metrics")
    assert code == 200 and "qtaskdist_up" in text
    code, health = await api("GET", "health")
    assert "workers" in health


# ---- L2: a real worker ------------------------------------------------------------------
@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_a_real_workers_host_and_pid_stay_hidden(
    api, database_url, redis_url, worker_procs
) -> None:
    code, t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, enqueue=True))
    worker_procs.append(start_worker(database_url, redis_url))
    pid = worker_procs[0].pid

    async def done() -> Any:
        code, row = await api("GET", f"tasks/{t['task_id']}")
        return row if row["status"] == "completed" else None

    row = await wait_for(done, 90, "the task to complete")
    stored = _sql(database_url, "SELECT worker, meta_data->>'host' FROM tasks")[0]
    assert stored == (f"{socket.gethostname()}-{pid}", socket.gethostname()), stored
    code, page = await api("GET", "tasks", params={"fields": "worker,meta_data,error"})
    host, name = socket.gethostname(), f"{socket.gethostname()}-{pid}"
    seen = list(_strings([row, page]))
    assert not [v for v in seen if v == host or name in v or str(pid) == v], seen
    assert not [k for k in _keys([row, page]) if k in ("host", "pid")]
    assert re.fullmatch(r"worker-[0-9a-f]{10}", row["worker"]) and "host" not in row["meta_data"]
    assert row["result"]["counts"] and page["tasks"][0]["worker"] == row["worker"]
