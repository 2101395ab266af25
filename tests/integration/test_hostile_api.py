"""A hostile user against the shared API (issue 23, the API side): quotas that hold under
real parallel requests, the quota before any circuit is checked, large bodies in flight
per owner, a byte bound per listed page, and no side channels (the events cursor, GET
metrics, workers' hosts and pids, who is an admin)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio

from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS, STREAMS
from qtaskdist_jupyter.core.config import libpq_url
from qtaskdist_jupyter.kernel.client import Client
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import BOB_TOKEN, TwoUserIdentity, simulate_spec, start_worker, wait_for

BOB = {"Authorization": f"token {BOB_TOKEN}"}
TOKEN = re.compile(r"c[0-9a-f]{32}")
TWO_USERS = {"ServerApp": {"identity_provider_class": TwoUserIdentity}}
ALICE_ADMIN = {**TWO_USERS, "QtaskdistApp": {"admin_users": ["alice"]}}
BROKEN = "OPENQASM 2.0;\nqreg q[1];\nnot_a_gate q[0];\n"


def _sql(database_url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def _active(database_url: str) -> int:
    q = "SELECT count(*) FROM tasks WHERE status IN ('pending', 'queued', 'running')"
    return int(_sql(database_url, q)[0][0])


@pytest_asyncio.fixture
async def http(jp_serverapp, http_server_client) -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own (40 connections): requests in flight at the same time."""
    port = http_server_client.get_http_port()
    base = f"http://127.0.0.1:{port}{jp_serverapp.base_url}qtaskdist/api/"
    headers = {"Authorization": f"token {jp_serverapp.identity_provider.token}"}
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=60
    ) as client:
        yield client


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


# ---- M3: quotas under concurrency -------------------------------------------------------
@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"max_active_tasks": 100}}])
async def test_concurrent_batches_never_pass_the_active_cap(http, database_url) -> None:
    spec = {"tasks": [simulate_spec(BELL_QASM2) for _ in range(10)]}
    got = await asyncio.gather(*(http.post("tasks/batch", json=spec) for _ in range(20)))
    codes = sorted(r.status_code for r in got)
    assert codes == [201] * 10 + [429] * 10, codes
    refused = next(r for r in got if r.status_code == 429)
    assert refused.json()["limit"] == "active_tasks" and refused.json()["maximum"] == 100
    assert int(refused.headers["Retry-After"]) > 0
    assert _active(database_url) == 100


async def test_parallel_single_submits_keep_the_priority_bound(http, sync_redis) -> None:
    spec = simulate_spec(BELL_QASM2, enqueue=True)
    got = await asyncio.gather(*(http.post("tasks", json=spec) for _ in range(40)))
    assert [r.status_code for r in got] == [201] * 40
    lane, seed = PRIORITY_STREAMS["simulate"], STREAMS["simulate"]
    assert (sync_redis.xlen(lane), sync_redis.xlen(seed)) == (8, 32)


@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"max_active_tasks": 2}}])
async def test_the_quota_is_checked_before_the_circuits(api, database_url) -> None:
    for _ in range(2):
        assert (await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[0] == 201
    # Circuits that would fail their check: the count alone answers first.
    code, err = await api("POST", "tasks", body=simulate_spec(BROKEN))
    assert code == 429 and err["limit"] == "active_tasks", err
    batch = {"tasks": [simulate_spec(BROKEN) for _ in range(5)]}
    code, err = await api("POST", "tasks/batch", body=batch)
    assert code == 429 and err["limit"] == "active_tasks" and err["value"] == 7, err
    assert _active(database_url) == 2


# ---- M3: large bodies in flight per owner -----------------------------------------------
LARGE = {**TWO_USERS, "QtaskdistApp": {"limits": {"large_body_bytes": 2000, "max_large_bodies": 1}}}


async def _hanging_post(jp_serverapp, port: int, token: str, size: int) -> Any:
    """A batch POST whose headers and first bytes are sent, the rest held back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"{jp_serverapp.base_url}qtaskdist/api/tasks/batch"
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: token {token}\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    writer.write(b'{"tasks": [')
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("qtd_config", [LARGE])
async def test_large_bodies_in_flight_are_bounded_per_owner(
    api, jp_serverapp, http_server_client, database_url
) -> None:
    port = http_server_client.get_http_port()
    alice = jp_serverapp.identity_provider.token
    spec = {"tasks": [simulate_spec(BELL_QASM2, name="x" * 100) for _ in range(8)]}
    assert len(json.dumps(spec)) > 2000
    reader, writer = await _hanging_post(jp_serverapp, port, alice, 50_000)
    await asyncio.sleep(0.3)  # the server has taken the slot
    code, err = await api("POST", "tasks/batch", body=spec)
    assert code == 429 and err["limit"] == "large_bodies" and err["maximum"] == 1, err
    # Small bodies and other owners are not held up.
    assert (await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[0] == 201
    assert (await api("POST", "tasks/batch", body=spec, headers=BOB))[0] == 201
    writer.close()  # the slot goes with the connection
    await asyncio.sleep(0.3)
    code, made = await api("POST", "tasks/batch", body=spec)
    assert code == 201 and made["count"] == 8, made


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    code = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return code, json.loads(await asyncio.wait_for(reader.readexactly(length), 10))


@pytest.mark.parametrize("qtd_config", [LARGE])
async def test_chunked_and_unauthenticated_large_bodies(
    jp_serverapp, http_server_client, database_url
) -> None:
    port = http_server_client.get_http_port()
    alice = jp_serverapp.identity_provider.token
    held = await _hanging_post(jp_serverapp, port, alice, 50_000)
    await asyncio.sleep(0.3)
    # A chunked body has no Content-Length: it is counted once it grows past the size.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"{jp_serverapp.base_url}qtaskdist/api/tasks/batch"
    body = json.dumps({"tasks": [simulate_spec(BELL_QASM2) for _ in range(20)]}).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {alice}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    for i in range(0, len(body), 1000):
        piece = body[i : i + 1000]
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    code, err = await _answer(reader)
    assert code == 429 and err["limit"] == "large_bodies", err
    writer.close()
    # Nobody to count it against: 403 from the headers (jupyter_server), before the body.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token nobody\r\n"
        "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n".encode()
    )
    await writer.drain()
    code, err = await _answer(reader)
    assert code == 403, err
    writer.close()
    held[1].close()
    assert _sql(database_url, "SELECT count(*) FROM tasks") == [(0,)]


@pytest.mark.parametrize(
    "qtd_config",
    [{"QtaskdistApp": {"max_active_tasks": 1, "limits": {"large_body_bytes": 2000}}}],
)
async def test_an_owner_at_the_cap_is_refused_before_a_large_body_is_read(
    api, jp_serverapp, http_server_client
) -> None:
    assert (await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[0] == 201
    port = http_server_client.get_http_port()
    token = jp_serverapp.identity_provider.token
    reader, writer = await _hanging_post(jp_serverapp, port, token, 50_000)
    code, err = await _answer(reader)  # the body is never sent: the headers decide
    assert code == 429 and err["limit"] == "active_tasks", err
    writer.close()


# ---- M4: a page has a byte bound -------------------------------------------------------
@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"limits": {"max_page_bytes": 5000}}}])
async def test_a_page_of_results_has_a_byte_bound(
    api, database_url, jp_serverapp, http_server_client
) -> None:
    ids = []
    for _ in range(3):
        ids.append((await api("POST", "tasks", body=simulate_spec(BELL_QASM2)))[1]["task_id"])
    counts = {format(i, "012b"): i for i in range(150)}  # about 3 KB as JSON
    for tid in ids:
        _sql(
            database_url,
            "UPDATE tasks SET status = 'completed', result = %s WHERE task_id = %s",
            (json.dumps({"counts": counts}), tid),
        )
    code, err = await api("GET", "tasks", params={"include": "result", "limit": "3"})
    assert code == 422 and err["field"] == "limit" and err["limit"] == "page_bytes", err
    assert err["maximum"] == 1 and err["max_page_bytes"] == 5000, err
    code, page = await api("GET", "tasks", params={"include": "result", "limit": "1"})
    assert code == 200 and page["tasks"][0]["result"]["counts"] == counts
    # Without the results the page is small, whatever the limit.
    code, page = await api("GET", "tasks", params={"limit": "3"})
    assert code == 200 and len(page["tasks"]) == 3
    # The notebook client pages on with the limit the server names.
    url = f"http://127.0.0.1:{http_server_client.get_http_port()}{jp_serverapp.base_url}"
    client = Client(url, jp_serverapp.identity_provider.token)
    rows = await asyncio.to_thread(client.tasks, include=("result",), limit=3)
    assert sorted(r["task_id"] for r in rows) == sorted(ids) and rows[2]["result"]["counts"]


# ---- M2: the events cursor -------------------------------------------------------------
@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_events_answers_look_the_same_with_or_without_others_events(api) -> None:
    async def own_event_id() -> str:
        code, start = await api("GET", "events", params={"timeout_s": "0"}, headers=BOB)
        await api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB)
        params = {"after": start["cursor"], "timeout_s": "5"}
        code, got = await api("GET", "events", params=params, headers=BOB)
        return str(got["events"][-1]["id"])

    async def poll(after: str) -> dict[str, Any]:
        code, got = await api("GET", "events", params={"after": after, "timeout_s": "0"},
                              headers=BOB)  # fmt: skip
        assert code == 200 and got["events"] == [], got
        assert TOKEN.fullmatch(got["cursor"]) and got["cursor"] != after, got
        return dict(got)

    # After an id that alice's event follows, and after one that nothing follows.
    followed = await own_event_id()
    await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    answers = [await poll(followed)]
    answers.append(await poll(await own_event_id()))
    assert [sorted(a) for a in answers] == [["cursor", "events"]] * 2
    # Both still resume where they read up to: bob's events after it, none of alice's.
    code, mine = await api("POST", "tasks", body=simulate_spec(BELL_QASM2), headers=BOB)
    resumed = []
    for a in answers:
        params = {"after": a["cursor"], "timeout_s": "5"}
        code, got = await api("GET", "events", params=params, headers=BOB)
        resumed.append([e["task_id"] for e in got["events"]])
    assert len(resumed[0]) == 2 and resumed[0][1] == mine["task_id"], resumed
    assert resumed[1] == [mine["task_id"]], resumed


# ---- L1 / L4: operators ----------------------------------------------------------------
@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_with_many_users_nobody_is_an_operator_until_configured(api, sync_redis) -> None:
    sync_redis.hset("qtaskdist:workers", "w1", f'{{"host": "h1", "pid": 11, "ts": {time.time()}}}')
    for headers in (None, BOB):
        code, err = await api("GET", "metrics", headers=headers)
        assert code == 403 and err["error"] == "operator_only", (code, err)
        code, health = await api("GET", "health", headers=headers)
        assert code == 200 and set(health) == {"database", "redis", "queue"}, health


@pytest.mark.parametrize("qtd_config", [ALICE_ADMIN])
async def test_admin_users_are_operators(api, sync_redis) -> None:
    sync_redis.hset("qtaskdist:workers", "w1", f'{{"host": "h1", "pid": 11, "ts": {time.time()}}}')
    code, text = await api("GET", "metrics")
    assert code == 200 and "qtaskdist_workers_known 1.0" in text, text
    code, health = await api("GET", "health")
    assert health["workers"][0]["host"] == "h1"
    code, err = await api("GET", "metrics", headers=BOB)
    assert code == 403 and err["error"] == "operator_only"


async def test_the_single_user_of_a_server_is_its_operator(api) -> None:
    code, text = await api("GET", "metrics")
    assert code == 200 and "qtaskdist_up" in text
    code, health = await api("GET", "health")
    assert "workers" in health


# ---- L2: no worker hosts or pids for users ---------------------------------------------
def _ran_on_node7(database_url: str, task_id: str) -> None:
    """The row as a worker named node7-4242 on host node7 leaves a failed attempt."""
    error = "simulation failed on node7: process 4242 ran out of memory (pid=4242)"
    attempt = {"attempt": 1, "worker": "node7-4242", "outcome": "failed", "error": error}
    meta = {"worker": "node7-4242", "host": "node7", "attempts": [attempt], "run_time_s": 1.0}
    _sql(
        database_url,
        "UPDATE tasks SET status = 'failed', worker = %s, error = %s, "
        "meta_data = meta_data || %s::jsonb WHERE task_id = %s",
        ("node7-4242", error, json.dumps(meta), task_id),
    )


@pytest.mark.parametrize("qtd_config", [TWO_USERS, ALICE_ADMIN])
async def test_users_do_not_see_worker_hosts_or_pids(api, database_url, qtd_config) -> None:
    code, t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, labels={"k": 1}))
    tid = t["task_id"]
    _ran_on_node7(database_url, tid)
    code, one = await api("GET", f"tasks/{tid}")
    code, page = await api("GET", "tasks", params={"fields": "error,worker,meta_data"})
    seen = json.dumps([one, page])
    if qtd_config is ALICE_ADMIN:
        assert one["worker"] == "node7-4242" and one["meta_data"]["host"] == "node7"
        return
    assert "node7" not in seen and "4242" not in seen, seen
    assert re.fullmatch(r"worker-[0-9a-f]{10}", one["worker"]), one
    assert page["tasks"][0]["worker"] == one["worker"] == one["meta_data"]["worker"]
    assert one["meta_data"]["attempts"][0]["worker"] == one["worker"]
    assert "host" not in one["meta_data"] and one["labels"] == {"k": 1}
    assert one["error"].startswith("simulation failed on [redacted]: process [redacted]")
    assert one["meta_data"]["run_time_s"] == 1.0 and one["status"] == "failed"
    assert uuid.UUID(one["task_id"])


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
