"""A task is ``running`` only while its job runs (issue 26, point 3).

A real worker claims more tasks than its job processes run at once; the claimed ones wait
behind the others. The rows (and the table's rules over them) must tell the two apart, and
a task's run time must be its job's, its queue wait up to its job's start.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

from qtaskdist_jupyter.kernel.widget import TaskTableState
from tests.fixtures.workers import heavy_qasm, kill_tree, rows, start_worker, stop, submit

TASKS = 8


def _shown(got: list[dict]) -> dict[str, int]:
    state = TaskTableState()
    state.apply_page(got)
    return state.counts()


async def test_claimed_tasks_wait_and_only_the_running_jobs_show_running(
    service, settings, tmp_path
) -> None:
    # Distinct shots: every task is a unit of its own, about a second of Aer each.
    payloads = [
        {"circuit": heavy_qasm(3, n=19), "shots": 10 + i, "method": "statevector", "seed": 1}
        for i in range(TASKS)
    ]
    ids = await submit(service, "simulate", payloads)
    # Two job processes; one read claims all eight (batch size 8, prefetch one batch).
    proc = start_worker(
        settings,
        *("--task-types", "simulate", "--concurrency", "2", "--batch-size", "8"),
        log=tmp_path / "worker.log",
    )
    samples: list[dict[str, int]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = await rows(service, ids)
            if all(r["status"] == "completed" for r in got):
                break
            samples.append(_shown(got))
            await asyncio.sleep(0.05)
        else:
            log = (tmp_path / "worker.log").read_text()[-3000:]
            raise AssertionError(f"not finished: {samples[-1:]}\n{log}")
    finally:
        try:
            stop(proc)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
    # While the worker held many claimed tasks, two ran and the rest waited. (Between a
    # job's end and its completion's write, SETTLE_AFTER_S and a statement, the process's
    # next task may already have started: so each of the two processes may show two for
    # a moment, more so on a loaded machine.)
    assert any(s["running"] == 2 and s["waiting"] >= 4 for s in samples), samples
    assert max(s["running"] for s in samples) <= 4, samples
    got = await rows(service, ids)
    for r in got:
        meta = r["meta_data"]
        assert r["claimed_at"] <= r["started_at"] <= r["finished_at"]
        # Run time is the job's: from its start to its end, give or take the pipe's hop
        # and the settle (SETTLE_AFTER_S and one statement).
        shown_run_s = (r["finished_at"] - r["started_at"]).total_seconds()
        assert -0.05 < shown_run_s - meta["run_time_s"] < 1.0, (shown_run_s, meta["run_time_s"])
        waited_s = (r["started_at"] - r["queued_at"]).total_seconds()
        assert abs(meta["queue_wait_s"] - waited_s) < 0.01
    # The last task to start waited behind the others, past its claim: its job process
    # had to finish at least one other task first (8 tasks, 2 processes, one claim).
    last = max(got, key=lambda r: r["started_at"])
    shortest_run_s = min(r["meta_data"]["run_time_s"] for r in got if r is not last)
    assert (last["started_at"] - last["claimed_at"]).total_seconds() > 0.9 * shortest_run_s


CLAIMED = 384  # --batch-size 128 × (2 job processes + 1 read prefetched)


async def test_of_384_claimed_tasks_two_run_and_the_rest_wait(service, settings, tmp_path) -> None:
    # Issue 26, Must hold: a worker holds 3 × 128 claimed tasks and runs two of them.
    payloads = [
        {"circuit": heavy_qasm(3, n=19), "shots": 10 + i, "method": "statevector", "seed": 1}
        for i in range(CLAIMED)
    ]
    ids = await submit(service, "simulate", payloads)
    proc = start_worker(
        settings,
        *("--task-types", "simulate", "--concurrency", "2", "--batch-size", "128"),
        log=tmp_path / "worker.log",
    )
    seen: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = _shown(await rows(service, ids))
            if seen["running"] + seen["waiting"] == CLAIMED and seen["running"] == 2:
                break
            await asyncio.sleep(0.1)
        else:
            log = (tmp_path / "worker.log").read_text()[-3000:]
            raise AssertionError(f"never held {CLAIMED} with 2 running: {seen}\n{log}")
        # The waiting ones never started: cancelled now, they show no run time.
        for tid in ids:
            await service.cancel(tid, owner=None)
    finally:
        try:
            stop(proc)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
    assert seen["waiting"] == CLAIMED - 2, seen
    got = await rows(service, ids)
    never_started = [r for r in got if r["status"] == "cancelled" and r["started_at"] is None]
    assert len(never_started) >= CLAIMED - 4, len(never_started)
