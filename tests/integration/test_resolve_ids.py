"""GET tasks/resolve through a real jupyter server and PostgreSQL: an id given by its start
(the 8 characters the tables show) resolves among the asker's task and batch ids only."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.server import BOB_TOKEN, TwoUserIdentity, simulate_spec

TWO_USERS = {"ServerApp": {"identity_provider_class": TwoUserIdentity}}
BOB = {"Authorization": f"token {BOB_TOKEN}"}


def sharing_start(start: str) -> str:
    """A fresh batch id whose first 8 hex digits are ``start``."""
    return start + str(uuid.uuid4())[8:]


async def _task(api, headers: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    code, body = await api("POST", "tasks", body=simulate_spec(BELL_QASM2, **kw), headers=headers)
    assert code == 201, body
    return body


async def _resolve(api, prefix: str, headers: dict[str, str] | None = None, **kw: str):
    return await api("GET", "tasks/resolve", params={"prefix": prefix, **kw}, headers=headers)


@pytest.mark.parametrize("qtd_config", [TWO_USERS])
async def test_a_start_resolves_among_the_askers_ids_only(api) -> None:
    task = await _task(api)
    tid = task["task_id"]
    start = str(uuid.uuid4())[:8]
    alices, bobs = sharing_start(start), sharing_start(start)
    await _task(api, batch_id=alices)
    await _task(api, batch_id=alices)
    await _task(api, headers=BOB, batch_id=bobs)

    code, got = await _resolve(api, tid[:8])
    assert code == 200 and got == {"prefix": tid[:8], "kind": "task", "id": tid}, got
    code, got = await _resolve(api, tid[:13].upper())  # any case, with its hyphen
    assert code == 200 and got["id"] == tid, got
    # Both users have a batch with this start: each gets their own, neither is ambiguous.
    code, got = await _resolve(api, start)
    assert code == 200 and got["kind"] == "batch" and got["id"] == alices, got
    code, got = await _resolve(api, start, BOB)
    assert code == 200 and got["kind"] == "batch" and got["id"] == bobs, got
    # Alice's task is not bob's to find, by its start or its whole id.
    for prefix in (tid[:8], tid):
        code, err = await _resolve(api, prefix, BOB)
        assert code == 404 and err["error"] == "task_not_found", err
    code, err = await _resolve(api, tid[:8], kind="batch")  # a task's start, batches only
    assert code == 404 and "none of your batches" in err["detail"], err


async def test_an_ambiguous_start_names_how_many_ids_it_starts(api, database_url) -> None:
    start = str(uuid.uuid4())[:8]
    first, second = sharing_start(start), sharing_start(start)
    await _task(api, batch_id=first)
    await _task(api, batch_id=second)
    code, err = await _resolve(api, start)
    assert code == 422 and err["error"] == "ambiguous_id", err
    assert err["field"] == "prefix" and err["matches"] == 2, err
    assert "ids of 2 of your tasks and batches" in err["detail"], err
    code, got = await _resolve(api, first[:13])  # one more digit tells them apart
    assert code == 200 and got["id"] == first, got

    # A task's id and a batch id sharing a start: ambiguous too, unless kind says which.
    task = await _task(api)
    tid = task["task_id"]
    await _task(api, batch_id=sharing_start(tid[:8]))
    code, err = await _resolve(api, tid[:8])
    assert code == 422 and err["matches"] == 2, err
    code, got = await _resolve(api, tid[:8], kind="task")
    assert code == 200 and got == {"prefix": tid[:8], "kind": "task", "id": tid}, got


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"prefix": ""},
        {"prefix": "1f0c2a9"},
        {"prefix": "zzzzzzzz"},
        {"prefix": "1f0c-2a9e"},
        {"prefix": "1f0c2a9e' OR '1'='1"},
        {"prefix": "%"},
        {"prefix": "1f0c2a9e", "kind": "owner"},
    ],
)
@pytest.mark.parametrize(
    "qtd_config", [{"QtaskdistApp": {"database_url": "postgresql://postgres@127.0.0.1:1/x"}}]
)
async def test_a_bad_start_is_422_before_any_query(api, params: dict[str, str]) -> None:
    # The database is unreachable: a 422 (not a 503) shows nothing was asked of it.
    code, err = await api("GET", "tasks/resolve", params=params)
    assert code == 422 and err["error"] == "invalid_input", err
    assert err["field"] == ("kind" if "kind" in params else "prefix"), err
    code, err = await api("GET", "tasks/resolve", params={"prefix": "1f0c2a9e"})
    assert code == 503 and err["error"] == "database_unavailable", err
