"""A statement PostgreSQL refuses for its data is not an outage: each kind against the
real database, and through a real worker (the task fails at once, nothing retries)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from qtaskdist_jupyter.core.errors import DatabaseUnavailable, DataRefused
from qtaskdist_jupyter.core.store.engine import classify
from qtaskdist_jupyter.core.store.store import NewTask, TaskStore
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.fake_qbraid import FakeQbraid, sdk_env
from tests.fixtures.workers import rows, run_worker, submit


def _task(**kw) -> NewTask:
    return NewTask(task_type="simulate", payload={"circuit": BELL_QASM2}, owner="alice", **kw)


async def _running(service) -> uuid.UUID:
    (row,) = await service.create([_task()], enqueue=True)
    await service.store.claim_many([(row["task_id"], 0)], worker="w")
    return row["task_id"]


async def test_data_exception_is_refused_not_unavailable(service) -> None:
    tid = await _running(service)
    with pytest.raises(DataRefused, match=r"data exception, SQLSTATE 22P05") as info:
        await service.store.complete(tid, 1, {"counts": {"0\x001": 1}}, {})
    assert "\n" not in info.value.message and info.value.detail["sqlstate"] == "22P05"
    # Nothing was written: the row is still running on its attempt.
    assert (await service.store.get(tid))["status"] == "running"
    with pytest.raises(DataRefused, match="22P05"):
        await service.store.complete_many([(tid, 1, {"x": "\x00"}, {})])


async def test_integrity_violation_is_refused(service) -> None:
    tid = uuid.uuid4()
    await service.store.insert_many([_task(task_id=tid)])
    with pytest.raises(DataRefused, match=r"integrity constraint violation, SQLSTATE 23505"):
        await service.store.insert_many([_task(task_id=tid)])


async def test_program_limit_is_refused(service) -> None:
    (row,) = await service.store.insert_many([_task()])
    seven_dims: list = ["x"]
    for _ in range(6):
        seven_dims = [seven_dims]
    with pytest.raises(DataRefused, match=r"program limit exceeded, SQLSTATE 54000.*maximum"):
        await service.store.update(row["task_id"], "alice", {"tags": seven_dims})


async def test_an_unreachable_database_is_unavailable() -> None:
    store = TaskStore.from_url("postgresql+psycopg://postgres@127.0.0.1:1/postgres")
    try:
        with pytest.raises(DatabaseUnavailable, match="database unreachable"):
            await store.get(uuid.uuid4())
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [("22001", "data"), ("23505", "data"), ("54000", "data"), ("54001", "data"),
     ("08006", "unavailable"), ("57P01", "unavailable"), ("53300", "unavailable"),
     ("40001", "unavailable"), ("57014", "unavailable"), ("42P01", "other")],
)  # fmt: skip
def test_classify_by_sqlstate(sqlstate: str, kind: str) -> None:
    exc = psycopg.errors.lookup(sqlstate)("x")
    assert classify(exc) == kind


def test_a_connection_error_without_sqlstate_is_unavailable() -> None:
    assert classify(psycopg.OperationalError("connection refused")) == "unavailable"


async def test_worker_fails_a_result_the_database_refuses_at_once(
    service, settings, tmp_path
) -> None:
    """A provider's counts with a NUL character: jsonb refuses them. The task fails with
    one line naming the refusal; it is not retried and not left running, and the next
    task completes."""
    with FakeQbraid(api_key="k", polls_to_complete=1) as fake:
        fake.corrupt_counts = True
        (tmp_path / ".qbraid").mkdir()
        env = {**sdk_env(fake, tmp_path), "QBRAID_API_KEY": "k"}
        device = "qbraid:qbraid:sim:qir-sv"
        bad, good = await submit(
            service,
            "backend_run",
            [{"circuit": BELL_QASM2, "device_id": device, "shots": 10},
             {"circuit": BELL_QASM2, "device_id": "local", "shots": 10}],
        )  # fmt: skip
        proc = run_worker(settings, "--task-types", "backend_run", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "database unreachable" not in proc.stderr
    bad_row, good_row = await rows(service, [bad, good])
    assert bad_row["status"] == "failed" and bad_row["retry_count"] == 0
    assert bad_row["attempt"] == 1
    err = bad_row["error"]
    assert "\n" not in err and "SQLSTATE 22P05" in err and "not stored" in err, err
    assert good_row["status"] == "completed", good_row["error"]
