"""Issue 23, resources: what one user's tasks may take from a shared server and fleet.

H3: a task admitted under a raised budget but over its job process's limit fails alone
and the worker goes on; a worker's own budget fails a task before Aer. M4: counts over a
worker's result limit fail at completion; large count maps leave the row. L3: a worker's
metrics listen on 127.0.0.1 unless told otherwise. L5: a per-owner cap on stored tasks,
and finished tasks past the retention age deleted with their arrays by ``qtaskdist gc``
and by the workers' reconciler.
Real PostgreSQL, Redis, Aer and worker processes; the API through a real Jupyter server.
The refusals at submit (H3's 30-qubit statevector, M4's million-shot counts) run against
the measured server process of test_hostile_suite.py.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import uuid

import psutil
import psycopg
import pytest

from qtaskdist_jupyter.core import arrays, counts
from qtaskdist_jupyter.core.config import libpq_url
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.hostile_inputs import rotations_qasm, uniform_qasm
from tests.fixtures.server import simulate_spec
from tests.fixtures.workers import (
    ROOT,
    rows,
    start_worker,
    stop,
    submit,
    wait_until,
    worker_env,
)

GIB = 1024**3


def _count(database_url: str, sql: str = "SELECT count(*) FROM tasks") -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return int(conn.execute(sql).fetchone()[0])


# ---- H3: over the job process's limit, in a real worker ----------------------------------
async def test_a_task_over_its_job_process_limit_fails_alone(service, settings, tmp_path) -> None:
    """Admitted under a raised budget (64 GiB: Aer's max_memory_mb lets it start), the
    24-qubit statevector (256 MiB) meets the job process's 64 MiB headroom."""
    raised = {"QTASKDIST_MAX_TASK_MEMORY_BYTES": str(64 * GIB)}
    proc = start_worker(settings, "--job-memory-mb", "64", env=raised, log=tmp_path / "w.log")
    try:
        big, bell = await submit(
            service,
            "simulate",
            [
                {"circuit": rotations_qasm(24), "shots": 10, "method": "statevector"},
                {"circuit": BELL_QASM2, "shots": 100, "seed": 3},
            ],
        )

        async def settled() -> bool:
            return all(r["status"] in ("completed", "failed") for r in await rows(service, [big]))

        await wait_until(settled, timeout=120)
        children = psutil.Process(proc.pid).children()
        (job,) = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
        soft, _hard = job.rlimit(psutil.RLIMIT_AS)
        assert 0 < soft - job.memory_info().vms <= 64 * 2**20
        # The next task runs on the same worker (the job process answered and goes on).
        (ok,) = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 50}])

        async def done() -> bool:
            return all(r["status"] == "completed" for r in await rows(service, [bell, ok]))

        await wait_until(done, timeout=60)
        (failed,) = await rows(service, [big])
        assert failed["status"] == "failed" and failed["retry_count"] == 0, failed
        assert failed["error"].startswith("memory_exceeded: "), failed["error"]
        assert "Cannot allocate memory" in failed["error"] and "\n" not in failed["error"]
        assert proc.poll() is None
    finally:
        stop(proc)


async def test_a_worker_budget_below_the_servers_fails_the_task_before_aer(
    service, settings, tmp_path
) -> None:
    proc = start_worker(settings, env={"QTASKDIST_MAX_TASK_MEMORY_BYTES": str(64 * 2**20)})
    try:
        big, fits = await submit(
            service,
            "simulate",
            [
                {"circuit": rotations_qasm(23), "shots": 10},  # 128 MiB, automatic
                {"circuit": rotations_qasm(21), "shots": 10},  # 32 MiB
            ],
        )
        (local,) = await submit(
            service,
            "backend_run",
            [{"circuit": rotations_qasm(23), "device_id": "local", "shots": 10}],
            max_retries=0,
        )

        async def settled() -> bool:
            got = await rows(service, [big, fits, local])
            return all(r["status"] in ("completed", "failed") for r in got)

        await wait_until(settled, timeout=120)
        over, ok, local_over = await rows(service, [big, fits, local])
        assert over["status"] == "failed" and over["retry_count"] == 0
        assert "23-qubit statevector" in over["error"] and "64.0 MiB" in over["error"]
        assert ok["status"] == "completed", ok["error"]
        # Aer refuses the local device's state before allocating it in the worker.
        assert local_over["status"] == "failed", local_over
        assert "Insufficient memory" in local_over["error"], local_over["error"]
    finally:
        stop(proc)


# ---- M4: counts against the result limit --------------------------------------------------
async def test_counts_over_the_workers_result_limit_fail_at_completion(
    service, settings, tmp_path
) -> None:
    """The server's bound (5 MB) is under its limit; the worker's limit (1 MiB) is not
    reached by any array, only by the counts Aer returns (about 95,000 keys, 2.5 MB).
    Counts under the limit but over the inline size (10,000 shots: 270 KB) leave the row."""
    env = {"QTASKDIST_MAX_RESULT_BYTES": str(2**20)}
    proc = start_worker(settings, env=env, log=tmp_path / "w.log")
    try:
        big, bell, wide = await submit(
            service,
            "simulate",
            [
                {"circuit": uniform_qasm(20), "shots": 10**5, "seed": 1},
                {"circuit": BELL_QASM2, "shots": 10**5, "seed": 1},
                {"circuit": uniform_qasm(20), "shots": 10**4, "seed": 2},
            ],
        )

        async def settled() -> bool:
            got = await rows(service, [big, bell, wide])
            return all(r["status"] in ("completed", "failed") for r in got)

        await wait_until(settled, timeout=120)
        over, ok, stored = await rows(service, [big, bell, wide])
        assert over["status"] == "failed" and over["retry_count"] == 0
        assert over["result"] is None
        assert "QTASKDIST_MAX_RESULT_BYTES is 1.0 MiB" in over["error"], over["error"]
        assert ok["status"] == "completed" and sum(ok["result"]["counts"].values()) == 10**5
        assert proc.poll() is None
        # Out of the row: a reference with a summary; the array holds every key.
        ref = stored["result"]["counts"]
        assert ref["$array"] == "counts" and ref["shots"] == 10**4 and len(ref["top"]) == 8
        assert len(json.dumps(stored["result"])) < 4096
        tid = stored["task_id"]
        chunks = [c async for c in service.iter_array(tid, "counts", ref, npy=False)]
        got = counts.from_array(arrays.decode(chunks, ref))
        assert sum(got.values()) == 10**4 and len(got) == ref["distinct"] > 9000
        assert all(len(k) == 20 and set(k) <= {"0", "1"} for k in got)
    finally:
        stop(proc)


# ---- L3: a worker's metrics port ----------------------------------------------------------
async def test_worker_metrics_listen_on_localhost_by_default(settings, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_worker(settings, "--metrics-port", str(port), log=tmp_path / "w.log")
    try:
        main = psutil.Process(proc.pid)

        async def listening() -> bool:
            return any(c.laddr.port == port for c in main.net_connections("tcp"))

        await wait_until(listening, timeout=60)
        addrs = {c.laddr.ip for c in main.net_connections("tcp") if c.laddr.port == port}
        assert addrs == {"127.0.0.1"}, addrs
    finally:
        stop(proc)


# ---- L5: stored tasks and retention -----------------------------------------------------------
@pytest.mark.parametrize("qtd_config", [{"QtaskdistApp": {"limits": {"max_stored_tasks": 3}}}])
async def test_stored_tasks_per_owner_are_capped(api, database_url) -> None:
    for _ in range(2):
        code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
        assert code == 201
    code, first = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 201
    # Finished tasks count too: cancelling frees nothing, deleting does.
    await api("POST", f"tasks/{first['task_id']}/cancel")
    code, err = await api("POST", "tasks/batch", body={"tasks": [simulate_spec(BELL_QASM2)]})
    assert code == 429 and err["limit"] == "stored_tasks", err
    assert "QTASKDIST_MAX_STORED_TASKS" in err["detail"] and err["maximum"] == 3
    assert _count(database_url) == 3
    code, _ = await api("POST", f"tasks/{first['task_id']}/retry")  # no new row: allowed
    assert code == 200
    await api("POST", f"tasks/{first['task_id']}/cancel")
    code, _ = await api("DELETE", f"tasks/{first['task_id']}")
    assert code == 204
    code, _t = await api("POST", "tasks", body=simulate_spec(BELL_QASM2))
    assert code == 201


async def _aged_tasks(service) -> dict[str, uuid.UUID]:
    """Tasks of every kind of age and status; the old finished ones carry an array."""
    names = ["old_done", "old_failed", "old_cancelled", "new_done", "old_queued", "old_running"]
    ids = await submit(service, "simulate", [{"circuit": BELL_QASM2}] * len(names))
    by = dict(zip(names, ids, strict=True))
    status = ["completed", "failed", "cancelled", "completed", "queued", "running"]
    with psycopg.connect(libpq_url(service.settings.database_url)) as conn:
        for (name, tid), st in zip(by.items(), status, strict=True):
            age = "40 days" if name.startswith("old") else "1 hour"
            ended = st in ("completed", "failed", "cancelled")
            conn.execute(
                "UPDATE tasks SET status = %(st)s, created_at = now() - %(age)s::interval, "
                "updated_at = now() - %(age)s::interval, finished_at = CASE WHEN %(ended)s "
                "THEN now() - %(age)s::interval END WHERE task_id = %(tid)s",
                {"st": st, "age": age, "ended": ended, "tid": tid},
            )
    for name in ("old_done", "new_done"):
        await service.store.put_array(by[name], 0, "statevector", io.BytesIO(b"x" * 3000))
    return by


async def _left(service, by: dict[str, uuid.UUID]) -> set[str]:
    present = {r["task_id"] for r in await service.store.get_many(list(by.values()))}
    return {name for name, tid in by.items() if tid in present}


async def test_qtaskdist_gc_deletes_old_finished_tasks_and_their_arrays(service, settings) -> None:
    by = await _aged_tasks(service)
    env = worker_env(settings, {"QTASKDIST_RETENTION_S": str(30 * 86_400)})
    cmd = [sys.executable, "-m", "qtaskdist_jupyter.core.embedded.cli", "gc", "--batch", "2"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "deleted 3 finished tasks" in done.stdout
    assert await _left(service, by) == {"new_done", "old_queued", "old_running"}
    assert await service.store.array_bytes(by["old_done"]) == 0
    assert await service.store.array_bytes(by["new_done"]) == 3000


async def test_the_reconciler_applies_the_retention_policy(service, settings, tmp_path) -> None:
    by = await _aged_tasks(service)
    # The running row's worker is unknown: the reconciler would release it; keep it ours.
    env = {"QTASKDIST_RETENTION_S": str(7 * 86_400)}
    proc = start_worker(settings, "--task-types", "backend_run", env=env, log=tmp_path / "w.log")
    try:

        async def collected() -> bool:
            return await _left(service, by) == {"new_done", "old_queued", "old_running"}

        await wait_until(collected, timeout=60)
        assert await service.store.array_bytes(by["old_done"]) == 0
        assert await service.store.array_bytes(by["new_done"]) == 3000
    finally:
        stop(proc)
