"""``device_id="local"``: a qBraid runtime device that runs on qiskit-aer in this process.

It plugs into qBraid's own runtime interfaces (``QuantumProvider`` → ``QuantumDevice`` →
``QuantumJob``), so ``backend_run`` exercises the same submit / status / result / cancel
path offline that it uses against qBraid's cloud, and a notebook can try a backend_run
without an API key.

Jobs run on Aer's asynchronous ``AerJob`` (a future on Aer's single-thread executor), so
``submit`` returns at once and a job that has not started yet can still be cancelled.
Jobs live only in the memory of the process that submitted them: the worker that submits
a backend_run also polls it.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from qbraid.programs import ExperimentType, ProgramSpec
from qbraid.runtime import (
    DeviceStatus,
    GateModelResultData,
    JobStatus,
    QuantumDevice,
    QuantumJob,
    QuantumProvider,
    Result,
    TargetProfile,
)
from qiskit import QuantumCircuit, transpile
from qiskit.providers import JobStatus as QiskitJobStatus
from qiskit_aer import AerSimulator
from qiskit_aer.jobs import AerJob

from qtaskdist_jupyter.core.jsontypes import JsonScalar

LOCAL_DEVICE_ID = "local"
LOCAL_JOB_PREFIX = "local:"
# Options a local run understands; anything else is refused rather than silently ignored.
LOCAL_OPTIONS = frozenset({"seed", "method"})
# Terminal jobs kept for polling; beyond this the oldest terminal ones are dropped so a
# long-lived worker does not keep every result it ever produced.
_MAX_KEPT_JOBS = 1024

_STATUS_FROM_AER = {
    QiskitJobStatus.INITIALIZING: JobStatus.QUEUED,
    QiskitJobStatus.QUEUED: JobStatus.QUEUED,
    QiskitJobStatus.VALIDATING: JobStatus.QUEUED,
    QiskitJobStatus.RUNNING: JobStatus.RUNNING,
    QiskitJobStatus.DONE: JobStatus.COMPLETED,
    QiskitJobStatus.ERROR: JobStatus.FAILED,
    QiskitJobStatus.CANCELLED: JobStatus.CANCELLED,
}


def run_on_aer(
    circuit: QuantumCircuit,
    *,
    shots: int,
    seed: int | None = None,
    method: str | None = None,
    max_memory_mb: int | None = None,
    mps_max_bond: int | None = None,
) -> AerJob:
    """Start ``circuit`` on a fresh AerSimulator; the same steps a plain Aer run takes.

    Kept as one function so "counts equal an in-process Aer run for the same seed" has a
    single definition: ``transpile(circuit, sim)`` then ``sim.run(..., seed_simulator=seed)``.
    """
    sim = AerSimulator(method=method) if method else AerSimulator()
    compiled = transpile(circuit, sim)
    run_options: dict[str, int] = {"shots": shots}
    if max_memory_mb:  # Aer refuses a state over the task budget before allocating it
        run_options["max_memory_mb"] = max_memory_mb
    if mps_max_bond and method == "matrix_product_state":  # bounds its memory (budget.py)
        run_options["matrix_product_state_max_bond_dimension"] = mps_max_bond
    if seed is not None:
        run_options["seed_simulator"] = seed
    return sim.run(compiled, **run_options)


class LocalJob(QuantumJob):
    """One Aer run, seen through qBraid's job interface."""

    def __init__(self, job_id: str, device: LocalAerDevice, aer_job: AerJob) -> None:
        super().__init__(job_id, device)
        self._aer_job = aer_job

    def status(self) -> JobStatus:
        return _STATUS_FROM_AER.get(self._aer_job.status(), JobStatus.UNKNOWN)

    def error_message(self) -> str | None:
        if self.status() != JobStatus.FAILED:
            return None
        future = self._aer_job._future  # AerJob exposes no public accessor for the error
        exc = future.exception() if future is not None else None
        if exc is not None:
            return f"{type(exc).__name__}: {exc}"
        # Aer reports most simulation errors in the Result rather than by raising.
        result = self._aer_job.result()
        return str(getattr(result, "status", None) or "Aer simulation failed")

    def counts(self) -> dict[str, int]:
        """Aer's counts exactly as ``Result.get_counts()`` gives them."""
        return dict(self._aer_job.result().get_counts())

    def result(self) -> Result[GateModelResultData]:
        status = self.status()
        success = status == JobStatus.COMPLETED
        data = GateModelResultData(measurement_counts=self.counts() if success else None)
        return Result(device_id=LOCAL_DEVICE_ID, job_id=str(self.id), success=success, data=data)

    def cancel(self) -> None:
        # A future that already started cannot be stopped; Aer has no preemption, so a
        # running local job finishes and its status stays what it really is.
        self._aer_job.cancel()


class LocalAerDevice(QuantumDevice):
    """The ``local`` device: takes qiskit circuits as they are and runs them on Aer."""

    def __init__(self, max_memory_mb: int | None = None, mps_max_bond: int | None = None) -> None:
        self.max_memory_mb = max_memory_mb
        self.mps_max_bond = mps_max_bond
        profile = TargetProfile(
            device_id=LOCAL_DEVICE_ID,
            simulator=True,
            experiment_type=ExperimentType.GATE_MODEL,
            num_qubits=AerSimulator().num_qubits,
            program_spec=ProgramSpec(QuantumCircuit, alias="qiskit"),
            provider_name="local",
        )
        super().__init__(profile=profile)

    def status(self) -> DeviceStatus:
        return DeviceStatus.ONLINE

    def submit(
        self,
        run_input: QuantumCircuit,
        *,
        shots: int,
        seed: int | None = None,
        method: str | None = None,
    ) -> LocalJob:
        aer_job = run_on_aer(
            run_input,
            shots=shots,
            seed=seed,
            method=method,
            max_memory_mb=self.max_memory_mb,
            mps_max_bond=self.mps_max_bond,
        )
        return LocalJob(f"{LOCAL_JOB_PREFIX}{uuid.uuid4()}", self, aer_job)


class LocalProvider(QuantumProvider):
    """Hands out the one local device and remembers the jobs submitted through it."""

    def __init__(self, max_memory_mb: int | None = None, mps_max_bond: int | None = None) -> None:
        self.max_memory_mb = max_memory_mb
        self.mps_max_bond = mps_max_bond
        self._device: LocalAerDevice | None = None
        self._jobs: OrderedDict[str, LocalJob] = OrderedDict()
        self._lock = threading.Lock()

    def get_devices(self, **kwargs: Any) -> list[QuantumDevice]:
        return [self.get_device(LOCAL_DEVICE_ID)]

    def get_device(self, device_id: str) -> LocalAerDevice:
        if device_id != LOCAL_DEVICE_ID:
            raise ValueError(f"the local provider has only device '{LOCAL_DEVICE_ID}'")
        with self._lock:
            if self._device is None:
                self._device = LocalAerDevice(self.max_memory_mb, self.mps_max_bond)
            return self._device

    def run(
        self,
        circuit: QuantumCircuit,
        *,
        shots: int,
        options: Mapping[str, JsonScalar] | None = None,
    ) -> LocalJob:
        """Submit through ``QuantumDevice.run`` (transpile/validate profile), then remember it."""
        opts = dict(options or {})
        unknown = set(opts) - LOCAL_OPTIONS
        if unknown:
            raise ValueError(
                f"unknown option(s) for the local device: {sorted(unknown)}; "
                f"allowed: {sorted(LOCAL_OPTIONS)}"
            )
        job = self.get_device(LOCAL_DEVICE_ID).run(circuit, shots=shots, **opts)
        assert isinstance(job, LocalJob)
        with self._lock:
            self._jobs[str(job.id)] = job
            self._evict()
        return job

    def job(self, job_id: str) -> LocalJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _evict(self) -> None:
        excess = len(self._jobs) - _MAX_KEPT_JOBS
        if excess <= 0:
            return
        terminal = JobStatus.terminal_states()
        for job_id in [j for j, job in self._jobs.items() if job.status() in terminal][:excess]:
            del self._jobs[job_id]
