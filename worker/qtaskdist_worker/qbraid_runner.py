"""Run a ``backend_run`` task's circuit on a qBraid device, or on ``device_id="local"``.

The API is synchronous; the worker loop calls it through ``asyncio.to_thread``.
Every failure leaves as a :mod:`qtaskdist_jupyter.core.errors` job error (``raise ... from``):

* cannot reach qBraid, timeouts, 5xx / 408 / 429 → :class:`RetryableJobError`
* bad API key, unknown or offline device, a circuit the device refuses, other 4xx,
  no ``QBRAID_API_KEY`` for a cloud device → :class:`PermanentJobError`

The qBraid SDK talks to ``{QBRAID_API_URL or https://api-v2.qbraid.com/api/v1}`` with an
``X-API-Key`` header: ``GET /users/verify`` when the client is built, ``GET /devices/{qrn}``,
``POST /jobs``, ``GET /jobs?tags=<json>``, ``GET /jobs/{qrn}``, ``GET /jobs/{qrn}/result``,
``POST /jobs/{qrn}/cancel`` (qbraid_core/services/runtime/client.py).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping

import requests
from qbraid.exceptions import QbraidError
from qbraid.runtime import DeviceStatus, QbraidJob, QbraidProvider
from qbraid_core.exceptions import QbraidException
from qbraid_core.services.runtime import QuantumRuntimeClient
from qbraid_core.services.runtime.schemas import JobStatus, RuntimeJob
from qbraid_core.sessions import QbraidSessionV1
from qiskit import QuantumCircuit

from qtaskdist_jupyter.core.errors import JobError, PermanentJobError, RetryableJobError
from qtaskdist_jupyter.core.jsontypes import JsonScalar
from qtaskdist_jupyter.core.kinds import BACKEND
from qtaskdist_jupyter.core.status import TaskStatus

from .local_device import LOCAL_DEVICE_ID, LOCAL_JOB_PREFIX, LocalJob, LocalProvider

log = logging.getLogger(__name__)

# qBraid job tag that carries our task id; it is how duplicates are found, and how a
# worker checks that a job it is about to resume belongs to the task at hand.
TASK_TAG = "qtaskdist_task_id"
# meta_data key of the worker's record of a task's provider job (id, device, task, attempt).
PROVIDER_JOB = "provider_job"
# qBraid resource names: colon-separated segments of letters, digits, "_", "." and "-"
# (``qbraid:qbraid:sim:qir-sv-1a2b3c``). Nothing else may reach a URL path: no "/", "?",
# "#", "%" or whitespace, so an id can never name another API route.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}(:[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}){0,7}")
_LOCAL_JOB_ID = re.compile(re.escape(LOCAL_JOB_PREFIX) + r"[0-9a-f\-]{36}")


def valid_job_id(job_id: str) -> bool:
    if job_id.startswith(LOCAL_JOB_PREFIX):
        return bool(_LOCAL_JOB_ID.fullmatch(job_id))
    return bool(_JOB_ID.fullmatch(job_id, 0, 512)) and len(job_id) <= 512


def _checked(job_id: str) -> str:
    if not valid_job_id(job_id):
        raise PermanentJobError(f"{job_id[:80]!r} is not a qBraid job id")
    return job_id


# Transport errors name the API's host and port; users read this text.
_URLISH = re.compile(r"\w+://[^\s'\"]+|host='[^']*'|port=\d+|\b[\w.\-]+:\d{2,5}\b")


def _public(text: str) -> str:
    return _URLISH.sub("<provider>", text)[:500]


_STATUS = {
    JobStatus.INITIALIZING: TaskStatus.QUEUED,
    JobStatus.QUEUED: TaskStatus.QUEUED,
    JobStatus.VALIDATING: TaskStatus.QUEUED,
    # HOLD: finished but results withheld for account reasons; they may still be
    # released, and the worker's time limit bounds the wait.
    JobStatus.HOLD: TaskStatus.QUEUED,
    JobStatus.UNKNOWN: TaskStatus.QUEUED,
    JobStatus.RUNNING: TaskStatus.RUNNING,
    JobStatus.CANCELLING: TaskStatus.RUNNING,
    JobStatus.COMPLETED: TaskStatus.COMPLETED,
    JobStatus.FAILED: TaskStatus.FAILED,
    JobStatus.CANCELLED: TaskStatus.CANCELLED,
}
_DEAD = {JobStatus.FAILED, JobStatus.CANCELLED}
_RETRYABLE_STATUS = {408, 429}
# What the SDK raises: its own trees, requests' errors, and ValueError (pydantic schema
# errors and qbraid's RuntimeAPIError both are ValueErrors).
_SDK_ERRORS = (QbraidError, QbraidException, requests.RequestException, ValueError)


class _Session(QbraidSessionV1):
    """qBraid's session minus two habits a worker must not have.

    It never reads ``~/.qbraid/qbraidrc`` nor ``QBRAID_ACCESS_TOKEN`` (the key comes from
    our Settings, the URL from the argument or ``QBRAID_API_URL``), and it verifies TLS,
    which the SDK turns off for qBraid Lab's sake.
    """

    @property
    def access_token(self) -> str | None:
        return None

    @access_token.setter
    def access_token(self, value: str | None) -> None:
        pass  # a token would replace the X-API-Key header; the worker uses keys only

    def __init__(self, api_key: str, base_url: str | None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        self.verify = True

    def get_config(self, config_name: str) -> str | None:
        return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _http_status(exc: BaseException) -> int | None:
    for err in _chain(exc):
        status = getattr(err, "_status_code", None)  # qbraid_core.RequestsApiError
        if not isinstance(status, int):
            status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _translate(exc: BaseException, doing: str, *, not_found: str | None = None) -> JobError:
    """Classify an SDK failure by the HTTP status (or transport error) at its root."""
    status = _http_status(exc)
    transport = any(isinstance(e, requests.ConnectionError | requests.Timeout) for e in _chain(exc))
    detail = _public(f"{doing}: {exc}")
    if status is None and transport:
        return RetryableJobError(f"qBraid API unreachable while {detail}")
    if status is not None and (status >= 500 or status in _RETRYABLE_STATUS):
        return RetryableJobError(f"qBraid API answered {status} while {detail}", status=status)
    if status in (401, 403):
        return PermanentJobError(
            f"qBraid rejected the API key ({status}) while {doing}; check QBRAID_API_KEY",
            status=status,
        )
    if status == 404 and not_found:
        return PermanentJobError(not_found, status=status)
    return PermanentJobError(f"qBraid refused {detail}", status=status)


def _created(job: RuntimeJob) -> float:
    stamps = job.timeStamps
    return stamps.createdAt.timestamp() if stamps is not None else float("inf")


class BackendRunner:
    """Submits circuits to qBraid devices (or the in-process ``local`` device) and polls them.

    Duplicate submissions. qbraid_core retries ``POST /jobs`` on 500/502/503/504/52x, so a
    job the API committed before its gateway failed gets a twin, and a task redelivered
    after a worker crash would submit again. Each job is therefore tagged
    ``qtaskdist_task_id=<task_id>`` and :meth:`submit`

    1. first lists jobs with that tag: if one is already queued, running or completed it
       is reused (a redelivered task does not pay twice);
    2. after submitting, lists them again and keeps exactly one: the oldest (then the
       lowest id) of those not failed/cancelled, cancelling the other live ones.

    Choosing the keeper by creation order rather than "the one the SDK returned" makes
    two workers racing on the same task agree on the same job instead of each cancelling
    the other's. Looking up alone could not work: the twin is created by the SDK's
    transparent retry, after our lookup.
    """

    def __init__(
        self,
        api_key: str | None,
        api_url: str | None = None,
        max_memory_mb: int | None = None,
        mps_max_bond: int | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_url = api_url  # None: QBRAID_API_URL (read by the SDK) or its default
        # The local device runs Aer in this process: Aer's own check keeps the task budget.
        self._local = LocalProvider(max_memory_mb, mps_max_bond)
        self._provider: QbraidProvider | None = None
        self._lock = threading.Lock()
        # Local jobs have no tags: which task each one was started for.
        self._local_tasks: dict[str, str] = {}

    # -- public API ----------------------------------------------------------------
    def submit(
        self,
        circuit: QuantumCircuit,
        *,
        device_id: str,
        shots: int,
        task_id: str,
        options: Mapping[str, JsonScalar] | None = None,
    ) -> str:
        """Start ``circuit`` and return the provider's job id."""
        if device_id == LOCAL_DEVICE_ID:
            try:
                local_id = str(self._local.run(circuit, shots=shots, options=options).id)
                self._local_tasks[local_id] = task_id
                return local_id
            except _SDK_ERRORS as exc:
                raise PermanentJobError(f"local device refused the job: {exc}") from exc
        provider = self._provider_or_raise()
        client = provider.client
        try:
            device = provider.get_device(device_id)
            device_status = device.status()
        except _SDK_ERRORS as exc:
            raise _translate(
                exc, f"looking up device {device_id!r}", not_found=f"unknown device {device_id!r}"
            ) from exc
        if device_status != DeviceStatus.ONLINE:
            raise PermanentJobError(f"qBraid device {device_id!r} is {device_status.name}")
        existing = self._settle(client, task_id)
        if existing is not None:
            log.info("task %s already has qBraid job %s; not submitting again", task_id, existing)
            return existing
        try:
            job = device.run(
                circuit, shots=shots, tags={TASK_TAG: task_id}, runtime_options=dict(options or {})
            )
        except _SDK_ERRORS as exc:
            raise _translate(exc, f"submitting to {device_id!r}") from exc
        assert not isinstance(job, list), "one circuit makes one job"
        try:
            return self._settle(client, task_id) or _checked(str(job.id))
        except JobError as exc:
            # The job exists; a failed clean-up must not make the caller submit again.
            log.warning("could not check task %s for duplicate jobs: %s", task_id, exc)
            return str(job.id)

    def owned_status(self, job_id: str, task_id: str) -> str | None:
        """``job_id``'s status if the provider says it was started for ``task_id``
        (its tag); None for anyone else's job."""
        if job_id.startswith(LOCAL_JOB_PREFIX):
            if self._local_tasks.get(_checked(job_id)) != task_id:
                return None
            return _STATUS[self._local_job(job_id).status()]
        job = self._get_job(job_id)
        if (job.tags or {}).get(TASK_TAG) != task_id:
            log.warning("job %s is not task %s's; not resuming it", job_id, task_id)
            return None
        return _STATUS[job.status]

    def status(self, job_id: str) -> str:
        """One of ``queued``, ``running``, ``completed``, ``failed``, ``cancelled``."""
        if job_id.startswith(LOCAL_JOB_PREFIX):
            return _STATUS[self._local_job(job_id).status()]
        return _STATUS[self._get_job(job_id).status]

    def counts(self, job_id: str) -> dict[str, int]:
        """Measurement counts of a completed job (bitstring → count)."""
        state = self.status(job_id)
        if state != TaskStatus.COMPLETED:
            raise PermanentJobError(f"job {job_id} is {state}; only completed jobs have counts")
        if job_id.startswith(LOCAL_JOB_PREFIX):
            return self._local_job(job_id).counts()
        try:
            result = QbraidJob(_checked(job_id), client=self._client()).result()
            counts = result.data.get_counts()
        except _SDK_ERRORS as exc:
            raise _translate(exc, f"fetching the result of {job_id}") from exc
        if not isinstance(counts, dict):
            raise PermanentJobError(f"job {job_id} returned batch results; expected one circuit")
        return {str(k): int(v) for k, v in counts.items()}

    def cancel(self, job_id: str) -> None:
        """Ask the provider to cancel; a job already finished is left as it is."""
        if job_id.startswith(LOCAL_JOB_PREFIX):
            self._local_job(job_id).cancel()
            return
        if self._get_job(job_id).status in JobStatus.terminal_states():
            return
        try:
            self._client().cancel_job(_checked(job_id))
        except _SDK_ERRORS as exc:
            # It may have finished between our look and the cancel.
            if self._get_job(job_id).status not in JobStatus.terminal_states():
                raise _translate(exc, f"cancelling {job_id}") from exc

    def error_message(self, job_id: str) -> str | None:
        """Why a failed (or cancelled) job ended, as the provider says; None otherwise."""
        if job_id.startswith(LOCAL_JOB_PREFIX):
            return self._local_job(job_id).error_message()
        job = self._get_job(job_id)
        if job.status == JobStatus.FAILED:
            return job.statusMsg or "job failed on the provider (no message given)"
        if job.status == JobStatus.CANCELLED:
            return job.statusMsg or "job was cancelled on the provider"
        return None

    # -- helpers -------------------------------------------------------------------
    def _local_job(self, job_id: str) -> LocalJob:
        job = self._local.job(_checked(job_id))
        if job is None:
            raise PermanentJobError(
                f"local job {job_id} is unknown to this process (local jobs live in the "
                "memory of the worker that submitted them)"
            )
        return job

    def _provider_or_raise(self) -> QbraidProvider:
        if not self._api_key:
            raise PermanentJobError(
                f"{BACKEND.name} on a qBraid device needs an API key: set QBRAID_API_KEY "
                "for the worker (or use device_id='local')"
            )
        with self._lock:
            if self._provider is None:
                try:
                    # Building the client calls GET /users/verify, which checks the key.
                    client = QuantumRuntimeClient(
                        session=_Session(api_key=self._api_key, base_url=self._api_url)
                    )
                except _SDK_ERRORS as exc:
                    raise _translate(exc, "verifying the qBraid API key") from exc
                provider = QbraidProvider(client=client)
                # get_device's 120 s cache is keyed on (API key, user), not on the URL or
                # the client: without this a runner could get a device bound to another
                # runner's client. We fetch the device's status on every submit anyway.
                setattr(provider, "__cache_disabled", True)  # qbraid._caching's switch
                self._provider = provider
            return self._provider

    def _client(self) -> QuantumRuntimeClient:
        return self._provider_or_raise().client

    def _get_job(self, job_id: str) -> RuntimeJob:
        _checked(job_id)
        try:
            return self._client().get_job(job_id)
        except _SDK_ERRORS as exc:
            raise _translate(
                exc, f"reading job {job_id}", not_found=f"unknown job {job_id}"
            ) from exc

    def _settle(self, client: QuantumRuntimeClient, task_id: str) -> str | None:
        """Keep one job for ``task_id`` (see the class docstring); return its id or None."""
        try:
            jobs = client.list_jobs(tags={TASK_TAG: task_id}, limit=100)
        except _SDK_ERRORS as exc:
            raise _translate(exc, f"listing jobs of task {task_id}") from exc
        # The filter is the server's; check the tag here too rather than trust it.
        usable = [
            j
            for j in jobs
            if j.tags.get(TASK_TAG) == task_id and j.status not in _DEAD and valid_job_id(j.jobQrn)
        ]
        if not usable:
            return None
        usable.sort(key=lambda j: (_created(j), j.jobQrn))
        keeper, extras = usable[0], usable[1:]
        for job in extras:
            if job.status in JobStatus.terminal_states():
                continue
            log.warning("task %s: cancelling duplicate qBraid job %s", task_id, job.jobQrn)
            try:
                client.cancel_job(job.jobQrn)
            except _SDK_ERRORS as exc:
                log.warning("could not cancel duplicate job %s: %s", job.jobQrn, exc)
        return keeper.jobQrn
