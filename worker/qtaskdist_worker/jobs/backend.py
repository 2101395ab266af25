"""``backend_run``: the glue between the async worker loop and the synchronous BackendRunner.

Runs in the worker process itself (the work happens at the provider): every SDK call goes
through ``asyncio.to_thread`` and the loop sleeps between polls, so hundreds of backend
tasks wait at once without blocking simulate tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import JobError, JobTimeout, PermanentJobError
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.kinds import BACKEND
from qtaskdist_jupyter.core.schemas import BackendPayload, parse_payload
from qtaskdist_jupyter.core.status import TaskStatus

from ..executor import JobCancelled
from ..qbraid_runner import PROVIDER_JOB, valid_job_id
from .common import load_circuit

log = logging.getLogger(__name__)


class JobRow(TypedDict):
    """The columns of the claimed row a backend job reads (``TaskRow.job_fields``)."""

    task_id: uuid.UUID
    attempt: int
    payload: JsonObject
    meta_data: JsonObject | None


class Counted(TypedDict):
    """A backend_run task's result: the provider job's counts."""

    counts: dict[str, int]
    device_id: str
    job_id: str


class ProviderJob(TypedDict):
    """What a backend_run task adds to its meta_data: the provider job that ran it."""

    provider_job_id: str
    device_id: str


async def run_backend(
    row: JobRow,
    runner: Any,
    *,
    limits: Limits,
    time_limit_s: float,
    cancel: asyncio.Event,
    annotate: Callable[[JsonObject], Awaitable[None]],
    poll_s: float = 1.0,
) -> tuple[Counted, ProviderJob]:
    """Submit (or resume) the task's provider job and wait for its counts."""
    p = parse_payload(BACKEND.name, row["payload"])
    assert isinstance(p, BackendPayload)
    task_id = str(row["task_id"])
    started = time.monotonic()
    circuit = await asyncio.to_thread(load_circuit, p.circuit, p.circuit_format, limits)

    attempt = int(row.get("attempt") or 0)
    job_id = await _resumable(row, runner, task_id, p.device_id, attempt)
    if job_id is None:
        job_id = await _submit(runner, circuit, p, task_id, attempt, annotate)

    delay = min(0.05, poll_s)
    while True:
        if cancel.is_set():
            await _cancel(runner, job_id)
            raise JobCancelled(f"the task was cancelled; provider job {job_id} cancelled")
        if time.monotonic() - started > time_limit_s:
            await _cancel(runner, job_id)
            raise JobTimeout(
                f"exceeded its time limit of {time_limit_s:g} s (provider job {job_id})"
            )
        state = await asyncio.to_thread(runner.status, job_id)
        if state == TaskStatus.COMPLETED:
            counts = await asyncio.to_thread(runner.counts, job_id)
            meta: ProviderJob = {"provider_job_id": job_id, "device_id": p.device_id}
            return {"counts": counts, "device_id": p.device_id, "job_id": job_id}, meta
        if state in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            why = await asyncio.to_thread(runner.error_message, job_id)
            raise PermanentJobError(f"provider job {job_id} {state}: {why or 'no reason given'}")
        try:
            await asyncio.wait_for(cancel.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, poll_s)


async def _submit(
    runner: Any,
    circuit: Any,
    p: BackendPayload,
    task_id: str,
    attempt: int,
    annotate: Callable[[JsonObject], Awaitable[None]],
) -> str:
    """Submit a new provider job and record it in the row (so a later attempt resumes it)."""
    job_id = await asyncio.to_thread(
        runner.submit,
        circuit,
        device_id=p.device_id,
        shots=p.shots,
        task_id=task_id,
        options=dict(p.provider_options),
    )
    await annotate(
        {
            PROVIDER_JOB: {
                "id": job_id,
                "device_id": p.device_id,
                "task_id": task_id,
                "attempt": attempt,
            },
            "provider_job_id": job_id,
            "device_id": p.device_id,
        }
    )
    return job_id


async def _resumable(
    row: JobRow, runner: Any, task_id: str, device_id: str, attempt: int
) -> str | None:
    """The provider job an earlier attempt of this task started, if it may be resumed.

    Only a record a worker wrote (``meta_data.provider_job``, beside which users can
    write nothing: their labels live under ``meta_data.user``) for this task, an earlier
    or this attempt, and the same device counts; the id must have the provider's syntax;
    and the provider must confirm the job carries this task's tag. Anything else is
    ignored and a new job is submitted (one per task: the runner finds a tagged twin)."""
    record = (row.get("meta_data") or {}).get(PROVIDER_JOB)
    if not isinstance(record, dict):
        return None
    job_id, at = record.get("id"), record.get("attempt")
    if not (
        isinstance(job_id, str)
        and record.get("task_id") == task_id
        and record.get("device_id") == device_id
        and type(at) is int
        and 0 < at <= attempt
        and valid_job_id(job_id)
    ):
        log.warning("task %s: ignoring a provider job record it did not write", task_id)
        return None
    try:
        state = await asyncio.to_thread(runner.owned_status, job_id, task_id)
    except PermanentJobError:
        return None  # e.g. a local job that lived in a worker that is gone
    if state is None or state in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        return None
    return job_id


async def _cancel(runner: Any, job_id: str) -> None:
    try:
        await asyncio.to_thread(runner.cancel, job_id)
    except JobError as exc:
        log.warning("could not cancel provider job %s: %s", job_id, exc)
