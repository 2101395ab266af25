"""The confused-deputy attacks on ``backend_run`` (issue 14), against a real worker and the
real qBraid SDK talking to FakeQbraid: a task that names another user's provider job, or a
path, in its metadata gets neither that job's result nor its cancel, and no request
leaves for another API route. Users can't write those keys through the API at all
(tests/integration/test_server_hardening.py); these rows are forged in the database, the way a row
from before the split would look."""

from __future__ import annotations

import json
import signal
import uuid
from typing import Any

import psycopg
import pytest

from qtaskdist_jupyter.core.config import libpq_url
from qtaskdist_jupyter.core.errors import PermanentJobError
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.fake_qbraid import FAKE_KEY
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
ZERO_QASM2 = BELL_QASM2.replace("h q[0];\ncx q[0],q[1];\n", "")  # always measures "00"


def _forge(settings: Any, task_id: uuid.UUID, job_id: str, *, attempt: int = 1) -> None:
    """Write the keys a worker would have written, with someone else's job id, and the
    legacy top-level keys the seed resumed from."""
    meta = {
        "provider_job_id": job_id,
        "device_id": DEVICE,
        "provider_job": {"id": job_id, "device_id": DEVICE, "task_id": str(task_id),
                         "attempt": attempt},
    }  # fmt: skip
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE tasks SET meta_data = meta_data || %s::jsonb WHERE task_id = %s",
            (json.dumps(meta), task_id),
        )


async def test_another_users_job_id_or_a_path_is_never_resumed(
    service, settings, fake, qenv
) -> None:
    (alice,) = await submit(service, "backend_run", [{"circuit": BELL_QASM2, "device_id": DEVICE,
                                                     "shots": 200}])  # fmt: skip
    proc = run_worker(settings, "--task-types", "backend_run", env=qenv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (a,) = await rows(service, [alice])
    assert a["status"] == "completed", a["error"]
    alice_job = a["result"]["job_id"]

    # Bob's tasks: one names alice's job, the others paths into the API.
    paths = ["../users/verify", "../../devices", "x/../../jobs", "a?b=c", "j%2F..%2Fusers"]
    bob = await submit(
        service,
        "backend_run",
        [{"circuit": ZERO_QASM2, "device_id": DEVICE, "shots": 50}] * (1 + len(paths)),
        owner="bob",
    )
    _forge(settings, bob[0], alice_job)
    for tid, path in zip(bob[1:], paths, strict=True):
        _forge(settings, tid, path)
    fake.requests.clear()
    proc = run_worker(settings, "--task-types", "backend_run", env=qenv)
    assert proc.returncode == 0, proc.stderr[-3000:]

    got = await rows(service, bob)
    for r in got:
        assert r["status"] == "completed", r["error"]
        # Bob's own circuit ran on a job of his own: all "00", never alice's Bell counts.
        assert r["result"]["counts"] == {"00": 50}, r["result"]
        assert r["result"]["job_id"] != alice_job
        assert fake.jobs[r["result"]["job_id"]].tags["qtaskdist_task_id"] == str(r["task_id"])
        assert r["meta_data"]["provider_job"]["task_id"] == str(r["task_id"])
    assert len(fake.jobs) == 1 + len(bob)
    # Alice's job was looked at once (its tag refused it) and never asked for a result.
    sent = [p for _m, p in fake.requests]
    assert not [p for p in sent if alice_job in p and p.endswith("/result")]
    assert all(".." not in p and "?" not in p.split("/api/v1")[1] for p in sent if "/jobs/" in p)
    assert sent.count("/api/v1/users/verify") <= 1  # the client's key check only


async def test_cancelling_a_task_never_cancels_another_users_job(
    service, settings, fake, qenv, tmp_path
) -> None:
    fake.polls_to_complete = 10**6  # provider jobs run until cancelled
    (alice,) = await submit(service, "backend_run", [{"circuit": BELL_QASM2, "device_id": DEVICE}])
    w = start_worker(settings, "--poll-interval-s", "0.1", env=qenv, log=tmp_path / "w.log")
    try:

        async def started(tid: uuid.UUID) -> bool:
            row = await service.store.get(tid)
            return "provider_job" in row["meta_data"]

        await wait_until(lambda: started(alice), timeout=60)
        alice_job = (await service.store.get(alice))["meta_data"]["provider_job"]["id"]

        spec = {"circuit": BELL_QASM2, "device_id": DEVICE}
        (bob,) = await submit(service, "backend_run", [spec], owner="bob")
        _forge(settings, bob, alice_job)

        # The forged record names alice's job; the worker must write its own over it.
        async def bob_has_own_job() -> bool:
            rec = (await service.store.get(bob))["meta_data"]["provider_job"]
            return rec["id"] != alice_job

        await wait_until(bob_has_own_job, timeout=60)
        bob_job = (await service.store.get(bob))["meta_data"]["provider_job"]["id"]
        await service.cancel(bob, "bob")

        async def bob_cancelled() -> bool:
            return fake.jobs[bob_job].status == "CANCELLED"

        await wait_until(bob_cancelled, timeout=20)
        assert fake.jobs[alice_job].status not in ("CANCELLED", "COMPLETED", "FAILED")
        await service.cancel(alice, "alice")
        assert stop(w, signal.SIGTERM) == 0
    finally:
        kill_tree(w)


def test_runner_checks_job_ids_before_any_request(fake) -> None:
    from qtaskdist_worker.qbraid_runner import BackendRunner

    runner = BackendRunner(FAKE_KEY, fake.url)
    for bad in ("../users/verify", "a/b", "x?y", "x#y", "x%2Fy", "", "a b", "j" * 600):
        fake.requests.clear()
        for call in (runner.status, runner.counts, runner.cancel, runner.error_message):
            with pytest.raises(PermanentJobError, match="not a qBraid job id"):
                call(bad)
        assert not [p for _m, p in fake.requests if "/jobs" in p], (bad, fake.requests)
