"""Crashes, duplicates, flushes, signals, malformed messages and time limits, with real
worker processes against real PostgreSQL, Redis and Aer."""

from __future__ import annotations

import asyncio
import json
import signal

from qtaskdist_jupyter.core.broker.keys import DEAD_STREAM, WORKERS_KEY
from qtaskdist_jupyter.core.broker.wire import TaskMessage
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.workers import (
    FOREVER_QASM3,
    completion_events,
    heavy_payload,
    kill_tree,
    rows,
    run_worker,
    start_worker,
    stop,
    submit,
    wait_until,
)


async def _status(service, tid) -> tuple[str, str | None]:
    row = await service.store.get(tid)
    return row["status"], row["worker"]


async def test_sigkill_mid_task_another_worker_completes_it_once(
    service, settings, sync_redis, tmp_path
) -> None:
    (tid,) = await submit(service, "simulate", [heavy_payload(16)])
    quick = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 10}] * 3)
    a = start_worker(settings, "--name", "doomed", "--task-types", "simulate",
                     log=tmp_path / "a.log")  # fmt: skip
    try:
        await wait_until(lambda: _is(service, tid, "running"), timeout=60)
        await asyncio.sleep(0.5)  # well inside the job
    finally:
        kill_tree(a)
    assert (await _status(service, tid)) == ("running", "doomed")
    b = run_worker(settings, "--name", "rescuer", "--task-types", "simulate")
    assert b.returncode == 0, b.stderr[-3000:]
    row = await service.store.get(tid)
    assert row["status"] == "completed" and row["worker"] == "rescuer"
    assert row["attempt"] == 2  # the dead worker's attempt 1 can never complete it now
    history = [(a["attempt"], a["worker"], a["outcome"]) for a in row["meta_data"]["attempts"]]
    # Taken over (entry idle past the visibility timeout) or released by the reconciler,
    # whichever of the rescuer's duties came first: either way attempt 1 is on record.
    assert history in (
        [(1, "doomed", "taken_over"), (2, "rescuer", "completed")],
        [(1, "doomed", "released"), (2, "rescuer", "completed")],
    ), history
    assert len(completion_events(sync_redis, tid)) == 1
    assert all(r["status"] == "completed" for r in await rows(service, quick))
    assert (await service.store.counts(owner=None))["running"] == 0
    assert sync_redis.xlen("stream:simulate") == 0


async def _is(service, tid, status: str) -> bool:
    return (await service.store.get(tid))["status"] == status


async def test_flush_redis_mid_run_every_task_completes(
    service, settings, sync_redis, tmp_path
) -> None:
    ids = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 2000}] * 150)
    w = start_worker(settings, "--burst", "--batch-size", "2", "--task-types", "simulate",
                     log=tmp_path / "w.log")  # fmt: skip
    try:

        async def some_done() -> bool:
            return (await service.store.counts(owner=None))["completed"] >= 4

        await wait_until(some_done, timeout=60, every=0.02)
        # FLUSHDB on this test's own Redis DB: the same loss as FLUSHALL or a restart of a
        # Redis without persistence, without touching other DBs on the shared server.
        sync_redis.flushdb()
        assert sync_redis.xlen("stream:simulate") == 0
        assert w.wait(timeout=90) == 0
    finally:
        kill_tree(w)
    got = await rows(service, ids)
    assert [r["status"] for r in got] == ["completed"] * len(ids)


async def test_same_message_twice_gives_one_completion(service, settings, sync_redis) -> None:
    (tid,) = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 10}])
    for _ in range(2):  # 3 copies in all
        sync_redis.xadd("stream:simulate", TaskMessage(tid, "simulate", 0).encode())
    assert sync_redis.xlen("stream:simulate") == 3
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = await service.store.get(tid)
    assert row["status"] == "completed" and row["attempt"] == 1
    assert len(completion_events(sync_redis, tid)) == 1
    assert sync_redis.xlen("stream:simulate") == 0  # acked entries are deleted


async def test_malformed_message_is_dead_lettered_and_worker_goes_on(
    service, settings, sync_redis
) -> None:
    sync_redis.xadd("stream:simulate", {"m": "not json"})
    sync_redis.xadd("stream:simulate", {"other": "field"})
    ids = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 10}] * 2)
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["status"] == "completed" for r in await rows(service, ids))
    dead = sync_redis.xrange(DEAD_STREAM)
    assert len(dead) == 2 and all("malformed" in f["reason"] for _e, f in dead)
    assert sync_redis.xlen("stream:simulate") == 0


async def test_time_limit_fails_the_task_and_the_worker_goes_on(service, settings) -> None:
    (slow,) = await submit(service, "simulate", [{"circuit": FOREVER_QASM3, "time_limit_s": 1}])
    after = await submit(service, "simulate", [{"circuit": BELL_QASM2, "shots": 10, "seed": 1}])
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = await service.store.get(slow)
    assert row["status"] == "failed" and row["retry_count"] == 0
    assert row["error"] == "exceeded its time limit of 1 s"
    assert (await service.store.get(after[0]))["status"] == "completed"


async def test_sigterm_finishes_in_flight_then_exits_zero(
    service, settings, sync_redis, tmp_path
) -> None:
    (tid,) = await submit(service, "simulate", [heavy_payload(8)])
    w = start_worker(settings, "--name", "polite", "--task-types", "simulate",
                     log=tmp_path / "w.log")  # fmt: skip
    try:
        await wait_until(lambda: _is(service, tid, "running"), timeout=60)
        assert "polite" in sync_redis.hkeys(WORKERS_KEY)
        assert stop(w, signal.SIGTERM) == 0
    finally:
        kill_tree(w)
    row = await service.store.get(tid)
    assert row["status"] == "completed" and row["worker"] == "polite"
    assert "polite" not in sync_redis.hkeys(WORKERS_KEY)
    assert sync_redis.xlen("stream:simulate") == 0


async def test_sigterm_past_grace_releases_the_task(service, settings, sync_redis) -> None:
    (tid,) = await submit(service, "simulate", [heavy_payload(16)])
    w = start_worker(settings, "--grace-s", "0.3", "--task-types", "simulate")
    try:
        await wait_until(lambda: _is(service, tid, "running"), timeout=60)
        assert stop(w, signal.SIGTERM) == 0
    finally:
        kill_tree(w)
    row = await service.store.get(tid)
    assert row["status"] == "queued" and row["worker"] is None and row["attempt"] == 1
    entries = sync_redis.xrange("stream:simulate")
    assert [json.loads(f["m"])["attempt"] for _e, f in entries] == [1]
    proc = run_worker(settings, "--task-types", "simulate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = await service.store.get(tid)
    assert row["status"] == "completed" and row["attempt"] == 2
    first = row["meta_data"]["attempts"][0]
    assert (first["attempt"], first["outcome"]) == (1, "released")
    assert "shut down before it finished" in first["error"]
