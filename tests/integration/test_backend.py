"""BackendRunner: the local Aer device, and the real qBraid SDK against tests.fake_qbraid."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, transpile
from qiskit_aer import AerSimulator
from qtaskdist_worker.qbraid_runner import TASK_TAG, BackendRunner

from qtaskdist_jupyter.core.errors import PermanentJobError, RetryableJobError
from tests.fixtures.fake_qbraid import FakeQbraid, sdk_env

KEY = "test-key"
DEVICE = "qbraid:qbraid:sim:qir-sv"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeQbraid]:
    """A started fake; the SDK's environment points at it and at an empty HOME."""
    with FakeQbraid(api_key=KEY, polls_to_complete=3) as server:
        for name in ("QBRAID_API_KEY", "QBRAID_ACCESS_TOKEN", "QBRAID_API_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in sdk_env(server, tmp_path).items():
            monkeypatch.setenv(name, value)
        yield server


def noisy_circuit(n: int = 3) -> QuantumCircuit:
    """Spread-out outcome distribution, so different seeds give different counts."""
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.h(q)
        qc.ry(0.3 + 0.4 * q, q)
    for q in range(n - 1):
        qc.cx(q, q + 1)
    qc.measure_all()
    return qc


def aer_counts(qc: QuantumCircuit, shots: int, seed: int) -> dict[str, int]:
    sim = AerSimulator()
    return dict(sim.run(transpile(qc, sim), shots=shots, seed_simulator=seed).result().get_counts())


def poll(runner: BackendRunner, job_id: str, timeout: float = 20.0) -> list[str]:
    """Statuses seen until a terminal one (consecutive repeats collapsed)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = runner.status(job_id)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("completed", "failed", "cancelled"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout}s; saw {seen}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- local device ------------------------------------------------------------------


def test_local_counts_equal_seeded_aer_run() -> None:
    runner = BackendRunner(api_key=None)
    qc = noisy_circuit()
    job_id = runner.submit(
        qc, device_id="local", shots=2000, task_id="t-local", options={"seed": 11}
    )
    assert job_id.startswith("local:")
    assert poll(runner, job_id)[-1] == "completed"
    counts = runner.counts(job_id)
    assert sum(counts.values()) == 2000
    assert counts == aer_counts(qc, 2000, seed=11)
    # The seed really reaches Aer: another seed gives other counts.
    assert counts != aer_counts(qc, 2000, seed=12)
    assert runner.error_message(job_id) is None


def test_local_job_ids_unique_and_options_checked() -> None:
    runner = BackendRunner(api_key=None)
    qc = noisy_circuit(2)
    ids = {runner.submit(qc, device_id="local", shots=10, task_id=f"t{i}") for i in range(3)}
    assert len(ids) == 3
    with pytest.raises(PermanentJobError, match="unknown option"):
        runner.submit(qc, device_id="local", shots=10, task_id="t", options={"bogus": 1})
    with pytest.raises(PermanentJobError, match="unknown to this process"):
        runner.status("local:00000000-0000-0000-0000-000000000000")


def test_remote_device_without_key_says_set_qbraid_api_key(fake: FakeQbraid) -> None:
    with pytest.raises(PermanentJobError, match="QBRAID_API_KEY"):
        BackendRunner(api_key=None).submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t")
    assert fake.requests == []


# -- real SDK against the fake -----------------------------------------------------


def test_submit_status_counts(fake: FakeQbraid, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray access token would make the SDK drop the X-API-Key header; ours ignores it.
    monkeypatch.setenv("QBRAID_ACCESS_TOKEN", "someone-elses-token")
    runner = BackendRunner(api_key=KEY)  # URL from QBRAID_API_URL, as the SDK reads it
    qc = noisy_circuit()
    job_id = runner.submit(qc, device_id=DEVICE, shots=1500, task_id="t1", options={"seed": 5})
    job = fake.jobs[job_id]
    assert job.tags == {TASK_TAG: "t1"}
    assert job.shots == 1500 and job.program["format"] == "qasm2"
    assert poll(runner, job_id) == ["queued", "running", "completed"]
    counts = runner.counts(job_id)
    assert counts == job.counts
    assert sum(counts.values()) == 1500
    assert counts == aer_counts(qc, 1500, seed=5)
    assert runner.error_message(job_id) is None
    assert ("GET", "/api/v1/users/verify") in fake.requests


def test_cancel(fake: FakeQbraid) -> None:
    fake.polls_to_complete = 1000
    runner = BackendRunner(api_key=KEY)
    job_id = runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t-cancel")
    assert runner.status(job_id) == "queued"
    runner.cancel(job_id)
    assert runner.status(job_id) == "cancelled"
    assert fake.jobs[job_id].status == "CANCELLED"
    runner.cancel(job_id)  # already terminal: nothing to do, no error
    with pytest.raises(PermanentJobError, match="cancelled"):
        runner.counts(job_id)


def test_bad_key_is_permanent(fake: FakeQbraid) -> None:
    runner = BackendRunner(api_key="wrong-key")
    with pytest.raises(PermanentJobError, match="API key") as info:
        runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t")
    assert info.value.__cause__ is not None
    assert info.value.detail["status"] == 401
    assert fake.jobs == {}


@pytest.mark.parametrize(
    ("device", "qubits", "match"),
    [
        ("qbraid:qbraid:sim:nope", 2, "unknown device"),
        ("qbraid:qbraid:sim:offline", 2, "OFFLINE"),
        ("qbraid:qbraid:sim:tiny", 3, "exceeds"),  # 3 qubits on a 2-qubit device
    ],
)
def test_device_problems_are_permanent(
    fake: FakeQbraid, device: str, qubits: int, match: str
) -> None:
    runner = BackendRunner(api_key=KEY, api_url=fake.url)
    with pytest.raises(PermanentJobError, match=match):
        runner.submit(noisy_circuit(qubits), device_id=device, shots=10, task_id="t")
    assert fake.jobs == {}


def test_502_after_commit_leaves_one_live_job(fake: FakeQbraid) -> None:
    fake.fail_submits_after_commit = 1
    runner = BackendRunner(api_key=KEY)
    job_id = runner.submit(noisy_circuit(), device_id=DEVICE, shots=100, task_id="t-dup")
    # The SDK did retry: two POSTs, two committed jobs ...
    assert fake.requests.count(("POST", "/api/v1/jobs")) == 2
    assert len(fake.jobs) == 2
    # ... of which exactly one is still live, and it is the one we report.
    live = fake.live_jobs(**{TASK_TAG: "t-dup"})
    assert [j.qrn for j in live] == [job_id]
    assert poll(runner, job_id)[-1] == "completed"
    assert sum(runner.counts(job_id).values()) == 100


def test_redelivered_task_reuses_its_job(fake: FakeQbraid) -> None:
    runner = BackendRunner(api_key=KEY)
    first = runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t-again")
    second = BackendRunner(api_key=KEY).submit(
        noisy_circuit(), device_id=DEVICE, shots=10, task_id="t-again"
    )
    assert second == first
    assert len(fake.jobs) == 1
    other = runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t-other")
    assert other != first and len(fake.jobs) == 2


def test_server_down_is_retryable(fake: FakeQbraid, monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"http://127.0.0.1:{closed_port()}/api/v1"
    with pytest.raises(RetryableJobError, match="unreachable"):
        BackendRunner(api_key=KEY, api_url=down).submit(
            noisy_circuit(), device_id=DEVICE, shots=10, task_id="t"
        )
    # The same through QBRAID_API_URL, and an explicit api_url beats the variable.
    monkeypatch.setenv("QBRAID_API_URL", down)
    with pytest.raises(RetryableJobError):
        BackendRunner(api_key=KEY).status("qbraid:qbraid:sim:qir-sv-123")
    job_id = BackendRunner(api_key=KEY, api_url=fake.url).submit(
        noisy_circuit(), device_id=DEVICE, shots=10, task_id="t-up"
    )
    assert job_id in fake.jobs


def test_server_down_after_submit_is_retryable(fake: FakeQbraid) -> None:
    runner = BackendRunner(api_key=KEY)
    job_id = runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t")
    fake.stop()
    with pytest.raises(RetryableJobError) as info:
        runner.status(job_id)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, RetryableJobError), (429, RetryableJobError), (400, PermanentJobError)],
)
def test_http_status_decides_retryable(
    fake: FakeQbraid, status: int, error: type[Exception]
) -> None:
    runner = BackendRunner(api_key=KEY)
    job_id = runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t")
    fake.force_status = status
    with pytest.raises(error) as info:
        runner.status(job_id)
    assert info.value.detail["status"] == status


def test_failed_job_reports_provider_message(fake: FakeQbraid) -> None:
    fake.fail_jobs = True
    runner = BackendRunner(api_key=KEY)
    job_id = runner.submit(noisy_circuit(), device_id=DEVICE, shots=10, task_id="t-fail")
    assert runner.error_message(job_id) is None  # not failed yet
    assert poll(runner, job_id)[-1] == "failed"
    assert "simulated provider failure" in (runner.error_message(job_id) or "")
    with pytest.raises(PermanentJobError):
        runner.counts(job_id)
