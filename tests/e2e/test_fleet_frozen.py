"""A worker frozen (SIGSTOP: a VM pause, a long GC) past the visibility timeout, then woken
(SIGCONT): its task is taken over and completed once elsewhere; its late completion is
refused by the attempt fence, dropped with one log line, and it goes on with new work.
No network namespace needed, so this runs everywhere (local PostgreSQL and Redis)."""

from __future__ import annotations

import os
import signal
import time

from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.fleet_checks import assert_exactly_once, figures
from tests.fixtures.workers import heavy_payload, kill_tree, start_worker, submit, wait_until

REFUSAL = "late completion(s) refused by the attempt fence"


async def test_frozen_worker_is_fenced_then_goes_on(service, settings, sync_redis, tmp_path):
    (tid,) = await submit(service, "simulate", [heavy_payload(16)])
    a_log, b_log = tmp_path / "frozen.log", tmp_path / "rescuer.log"
    a = start_worker(settings, "--name", "frozen", "--task-types", "simulate", log=a_log)
    b = None
    try:

        async def running_on_a() -> bool:
            row = await service.store.get(tid)
            return row["status"] == "running" and row["worker"] == "frozen"

        await wait_until(running_on_a, timeout=60)
        os.kill(a.pid, signal.SIGSTOP)  # the worker only: its job process runs on
        frozen_at = time.monotonic()
        b = start_worker(settings, "--name", "rescuer", "--task-types", "simulate", log=b_log)

        async def done_by_b() -> bool:
            row = await service.store.get(tid)
            return row["status"] == "completed" and row["worker"] == "rescuer"

        await wait_until(done_by_b, timeout=90)
        recovery_s = time.monotonic() - frozen_at
        kill_tree(b)  # from now on only the woken worker can run anything
        os.kill(a.pid, signal.SIGCONT)

        noticed = (REFUSAL, f"task {tid} was cancelled; stopping it")

        async def refused() -> bool:
            # Woken, it either settles first and the fence refuses the completion, or its
            # heartbeat's row check first sees the newer attempt and stops the job: one
            # line either way, and no completion of its own.
            return any(line in a_log.read_text() for line in noticed)

        await wait_until(refused, timeout=60)
        # It goes on: new work is done by the worker that was frozen.
        later = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 64}] * 3)

        async def later_done() -> bool:
            rows = await service.store.get_many(later)
            return all(r["status"] == "completed" for r in rows)

        await wait_until(later_done, timeout=60)
        assert {r["worker"] for r in await service.store.get_many(later)} == {"frozen"}
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
        kill_tree(a)
        if b is not None:
            kill_tree(b)
    lines = [line for line in a_log.read_text().splitlines() if REFUSAL in line]
    stopped = [line for line in a_log.read_text().splitlines() if noticed[1] in line]
    # Noticed (either way, or both at once), logged as single lines, not a traceback.
    assert (lines or stopped) and len(lines) <= 1 and len(stopped) <= 1, (lines, stopped)
    assert "Traceback" not in a_log.read_text()
    ids = [tid, *later]
    stats = await assert_exactly_once(service, sync_redis, ids, shots={tid: 10})
    row = await service.store.get(tid)
    history = [(x["worker"], x["outcome"]) for x in row["meta_data"]["attempts"]]
    assert history[-1] == ("rescuer", "completed") and ("frozen", "completed") not in history
    figures(
        "frozen worker (SIGSTOP)",
        tasks=len(ids),
        completions=stats["completions"],
        fence_refusals=len(lines),
        stopped_by_row_check=len(stopped),
        recovery_s=recovery_s,
    )
