"""backend_run through the real qBraid SDK against FakeQbraid, and the offline local device;
retries with backoff, dead letters, and cancelling queued and running tasks."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import timedelta

from qiskit import qasm2
from qiskit_aer import AerSimulator

from qtaskdist_jupyter.core.broker.keys import DEAD_STREAM
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.workers import (
    kill_tree,
    rows,
    run_worker,
    start_worker,
    stop,
    submit,
    wait_until,
)

DEVICE = "qbraid:qbraid:sim:qir-sv"


async def test_backend_run_through_sdk_and_local_device(service, settings, fake, qenv) -> None:
    ids = await submit(
        service,
        "backend_run",
        [
            {"circuit": BELL_QASM2, "device_id": DEVICE, "shots": 100},
            {"circuit": BELL_QASM2, "device_id": "local", "shots": 300,
             "provider_options": {"seed": 42}},
            {"circuit": BELL_QASM2, "device_id": "qbraid:qbraid:sim:offline"},
        ],
    )  # fmt: skip
    proc = run_worker(settings, "--task-types", "backend_run", env=qenv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote, local, offline = await rows(service, ids)
    # A permanent error (device offline) fails at once: no retry, no dead letter.
    assert offline["status"] == "failed" and offline["retry_count"] == 0, offline["error"]
    assert "OFFLINE" in offline["error"] and offline["attempt"] == 1
    assert remote["status"] == "completed", remote["error"]
    res = remote["result"]
    assert res["device_id"] == DEVICE and res["job_id"] in fake.jobs
    assert sum(res["counts"].values()) == 100 and set(res["counts"]) <= {"00", "11"}
    assert remote["meta_data"]["provider_job_id"] == res["job_id"]
    assert len(fake.jobs) == 1  # submitted once
    assert local["status"] == "completed", local["error"]
    circ = qasm2.loads(BELL_QASM2)
    want = AerSimulator().run(circ, shots=300, seed_simulator=42).result().get_counts()
    assert local["result"]["counts"] == dict(want)


async def test_5xx_is_retried_with_backoff_then_dead_lettered(
    service, settings, fake, qenv, sync_redis
) -> None:
    fake.force_status = 503
    (flaky,) = await submit(
        service, "backend_run", [{"circuit": BELL_QASM2, "device_id": DEVICE}], max_retries=1
    )
    w = start_worker(settings, "--burst", "--retry-base-s", "0.6", "--task-types", "backend_run",
                     env=qenv)  # fmt: skip
    seen_backoff: list[float] = []
    try:

        async def waiting_for_retry() -> bool:
            row = await service.store.get(flaky)
            if row["status"] == "queued" and row["scheduled_for"] is not None:
                seen_backoff.append((row["scheduled_for"] - row["updated_at"]).total_seconds())
            return row["status"] == "failed"

        await wait_until(waiting_for_retry, timeout=90, every=0.05)
        assert w.wait(timeout=60) == 0
    finally:
        kill_tree(w)
    row = await service.store.get(flaky)
    assert row["retry_count"] == 1 and row["attempt"] == 2
    assert "503" in row["error"] or "forced" in row["error"].lower(), row["error"]
    assert [a["outcome"] for a in row["meta_data"]["attempts"]] == ["retry", "failed"]
    # Backoff: the row waited in queued with scheduled_for 0.3..0.6 s ahead (base 0.6 s,
    # jittered into [0.5, 1]x).
    assert seen_backoff and max(seen_backoff) >= 0.3
    assert row["scheduled_for"] - row["created_at"] > timedelta(seconds=0.3)
    dead = [f for _e, f in sync_redis.xrange(DEAD_STREAM)]
    assert [f["task_id"] for f in dead] == [str(flaky)]
    assert "retries exhausted" in dead[0]["reason"]


async def test_cancel_queued_task_and_running_backend_task(
    service, settings, fake, qenv, sync_redis, tmp_path
) -> None:
    fake.polls_to_complete = 10**6  # the provider job never finishes by itself
    (queued,) = await submit(service, "simulate", [{"circuit": BELL_QASM2}])
    await service.cancel(queued, "alice")
    (running,) = await submit(
        service, "backend_run", [{"circuit": BELL_QASM2, "device_id": DEVICE}]
    )
    w = start_worker(settings, "--poll-interval-s", "0.1", env=qenv, log=tmp_path / "w.log")
    try:

        async def submitted() -> bool:
            row = await service.store.get(running)
            return "provider_job_id" in row["meta_data"]

        await wait_until(submitted, timeout=60)
        job_id = (await service.store.get(running))["meta_data"]["provider_job_id"]
        assert fake.jobs[job_id].status not in ("CANCELLED", "COMPLETED")
        await service.cancel(running, "alice")

        async def provider_cancelled() -> bool:
            return fake.jobs[job_id].status == "CANCELLED"

        await wait_until(provider_cancelled, timeout=20)
        await wait_until(lambda: _empty(sync_redis), timeout=20)
        assert stop(w, signal.SIGTERM) == 0
    finally:
        kill_tree(w)
    q, r = await rows(service, [queued, running])
    assert q["status"] == "cancelled" and q["result"] is None and q["attempt"] == 0
    assert r["status"] == "cancelled" and r["result"] is None
    events = [json.loads(f["m"]) for _e, f in sync_redis.xrange("stream:events")]
    assert not [e for e in events if e["task_id"] == str(queued) and e["status"] == "running"]


async def _empty(sync_redis) -> bool:
    await asyncio.sleep(0)
    return sync_redis.xlen("stream:simulate") == 0 and sync_redis.xlen("stream:backend") == 0
