"""The rows TaskStore's statements return, as ``TypedDict``s (plain dicts at run time).

Each shape is the set of columns one kind of statement reads back, column by column as
:mod:`qtaskdist_jupyter.core.models` declares them. A shape with more columns is assignable
to one with fewer (a :class:`LightRow` is an :class:`EventRow`), so a caller takes the
narrowest shape it reads. The queue facade turns rows into frozen
:class:`~qtaskdist_jupyter.core.queue.rows.TaskRow` values for the workers; the REST API
answers :class:`TaskRecord` and :class:`PageRow` as JSON.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Required, TypedDict

from qtaskdist_jupyter.core.jsontypes import JsonObject


class EventRow(TypedDict):
    """What an event (and a task message) is written from: ``statements.EVENT``, and what
    ``insert_many`` reads back of a large batch."""

    task_id: uuid.UUID
    task_type: str
    # One of core.status.TaskStatus's values.
    status: str
    owner: str
    # Bumped by every claim; a write of an attempt is fenced on it.
    attempt: int
    # The batch the task was submitted in (None: a single submission).
    batch_id: uuid.UUID | None


class EndedRow(EventRow):
    """What a completion returns (``complete_many``): the event columns and the attempt's
    start, which its event carries."""

    # When the attempt's job began (None: no start was written or carried).
    started_at: datetime | None


class LightRow(EventRow):
    """``statements.LIGHT``: what a worker needs to run the task and write its events (a
    claim, a transition, the reconciler's due queued rows)."""

    # The task's input, as its kind's pydantic model reads it (core/schemas.py).
    payload: JsonObject
    # Automatic retries taken so far, and how many the task allows.
    retry_count: int
    max_retries: int
    created_at: datetime
    # When its current wait began: creation, a user's retry, or a retry's due time.
    queued_at: datetime
    # When a worker claimed the current attempt, and when its job began.
    claimed_at: datetime | None
    started_at: datetime | None
    # The system's keys (attempts, provider ids, …) and the user's labels.
    meta_data: JsonObject


class RunningRow(LightRow):
    """A running row as the reconciler reads it (``running_rows``): LIGHT and its worker."""

    # The worker holding the attempt (None once released).
    worker: str | None


class DeletedRow(TypedDict):
    """What ``delete`` returns of the row it removed: what its ``deleted`` event needs."""

    task_id: uuid.UUID
    task_type: str
    owner: str
    attempt: int
    batch_id: uuid.UUID | None


class TaskRecord(RunningRow):
    """Every column of a task, as ``get`` / ``update`` / ``get_many`` read it and the REST
    API answers it (GET tasks/{id})."""

    # The job's result (None until completed; arrays stored aside are referenced in it).
    result: JsonObject | None
    # The last failure's message (None after a success or a user's retry).
    error: str | None
    updated_at: datetime
    # A retried task's due time (None: due now).
    scheduled_for: datetime | None
    name: str | None
    tags: list[str]
    # When the last attempt ended (completed, failed, cancelled).
    finished_at: datetime | None


class PageRow(TypedDict, total=False):
    """A row of a GET tasks page (``list``): the columns the view asked for, always with
    ``task_id`` and ``created_at`` (the keyset the next page starts from). Types as in
    :class:`TaskRecord`."""

    task_id: Required[uuid.UUID]
    created_at: Required[datetime]
    task_type: str
    status: str
    owner: str
    attempt: int
    batch_id: uuid.UUID | None
    payload: JsonObject
    result: JsonObject | None
    error: str | None
    retry_count: int
    max_retries: int
    updated_at: datetime
    scheduled_for: datetime | None
    meta_data: JsonObject
    name: str | None
    tags: list[str]
    queued_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None


__all__ = [
    "DeletedRow",
    "EndedRow",
    "EventRow",
    "LightRow",
    "PageRow",
    "RunningRow",
    "TaskRecord",
]
