"""The frozen values that cross the queue facade: a task's row as a worker holds it, and an
event as a reader of the events stream gets it.

:class:`TaskRow` is built from a row the store returns (``from_row``: the columns a
transition returns, :data:`~qtaskdist_jupyter.core.store.statements.LIGHT`, or fewer), and
:class:`TaskEvent` from an entry of the events stream as the broker decoded it
(``from_entry``). The facade turns rows into the event fields the broker writes
(:meth:`TaskRow.event_fields`, or :func:`event_fields` of a store row), so no caller
builds those by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypedDict

from qtaskdist_jupyter.core.broker.wire import EventFields
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject, JsonValue
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.core.store.shapes import EndedRow, EventRow, LightRow, RunningRow

# Statuses whose event carries the attempt's start (``started_at``).
_ENDED = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value)
# The rows a TaskRow is built from: a transition's (LIGHT), a running row with its worker
# (or a whole record), a start's (the event columns) and a completion's (and its start).
StoreRow = EventRow | EndedRow | LightRow | RunningRow


class JobFields(TypedDict):
    """The columns a backend job reads (TaskRow.job_fields)."""

    task_id: uuid.UUID
    attempt: int
    payload: JsonObject
    meta_data: JsonObject | None


def event_fields(row: EventRow, *, priority: bool = False) -> EventFields:
    """What the broker writes a row's event (and task message) from: its event columns,
    and with ``priority`` its message goes onto the priority stream."""
    fields: EventFields = {
        "task_id": row["task_id"],
        "task_type": row["task_type"],
        "status": row["status"],
        "owner": row["owner"],
        "attempt": row["attempt"],
        "batch_id": row["batch_id"],
    }
    if priority:
        fields["priority"] = True
    return fields


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task's row at one attempt: what a worker needs to run it and to write its events.

    Columns a statement did not return are None, or empty for the payload (a completion
    returns the event columns only)."""

    task_id: uuid.UUID
    task_type: str
    status: str
    owner: str
    attempt: int
    batch_id: uuid.UUID | None = None
    payload: JsonObject = field(default_factory=dict)
    retry_count: int = 0
    max_retries: int = 0
    created_at: datetime | None = None
    queued_at: datetime | None = None
    claimed_at: datetime | None = None
    started_at: datetime | None = None
    meta_data: JsonObject | None = None
    worker: str | None = None

    @classmethod
    def from_row(cls, row: StoreRow) -> TaskRow:
        """The row a statement returned: the columns it did not return stay unset. (Two
        whole constructor calls on purpose: building the short row and ``replace``-ing
        the rest in doubles the cost, 3.9 -> 8.4 us a row, on the worker's claim path.)"""
        if "payload" not in row:
            started_at = row["started_at"] if "started_at" in row else None
            return cls(
                task_id=row["task_id"],
                task_type=row["task_type"],
                status=str(row["status"]),
                owner=row["owner"],
                attempt=int(row["attempt"]),
                batch_id=row.get("batch_id"),
                started_at=started_at,
            )
        return cls(
            task_id=row["task_id"],
            task_type=row["task_type"],
            status=str(row["status"]),
            owner=row["owner"],
            attempt=int(row["attempt"]),
            batch_id=row.get("batch_id"),
            payload=row["payload"] or {},
            retry_count=int(row["retry_count"] or 0),
            max_retries=int(row["max_retries"] or 0),
            created_at=row["created_at"],
            queued_at=row["queued_at"],
            claimed_at=row["claimed_at"],
            started_at=row["started_at"],
            meta_data=row["meta_data"],
            worker=row["worker"] if "worker" in row else None,
        )

    def with_meta(self, meta: JsonMap) -> TaskRow:
        """This row with ``meta`` merged into its meta_data (as the store merged it)."""
        return replace(self, meta_data={**(self.meta_data or {}), **meta})

    def job_fields(self) -> JobFields:
        """The columns a backend job reads (task id, attempt, payload, meta_data)."""
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "payload": self.payload,
            "meta_data": self.meta_data,
        }

    def event_fields(self, *, priority: bool = False, started: bool = False) -> EventFields:
        """What the broker writes this row's event (and task message) from
        (broker.packing.pack_rows): ``priority`` puts its message on the priority stream,
        ``started`` marks the running event of a job that began."""
        fields: EventFields = {
            "task_id": self.task_id,
            "task_type": self.task_type,
            "status": self.status,
            "owner": self.owner,
            "attempt": self.attempt,
            "batch_id": self.batch_id,
        }
        if priority:
            fields["priority"] = True
        if started:
            fields["started"] = True
        if self.status in _ENDED and self.started_at is not None:
            # A quick task's start was never sent on its own (worker starts.Starter).
            fields["started_at"] = round(self.started_at.timestamp(), 6)
        return fields


_EVENT_KEYS = ("task_id", "status", "owner", "task_type", "attempt", "batch_id", "ts")


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One entry of the events stream (docs/message-format.md): ``id`` is the stream id."""

    id: str
    task_id: str
    status: str
    owner: str
    task_type: str
    attempt: int
    batch_id: str | None
    ts: float
    # A running event whose job began (a running event without it is the claim).
    started: bool = False
    # An ended attempt's start, in seconds since the epoch (None: not sent).
    started_at: float | None = None

    @classmethod
    def from_entry(cls, entry_id: str, data: Mapping[str, object] | None) -> TaskEvent | None:
        """The event of a decoded stream entry; None for one that is not ours to interpret
        (not decodable, or a key of the format missing or mistyped)."""
        if data is None or any(k not in data for k in _EVENT_KEYS):
            return None
        task_id, status, owner, task_type = (data[k] for k in _EVENT_KEYS[:4])
        attempt, batch_id, ts = data["attempt"], data["batch_id"], data["ts"]
        if not (
            isinstance(task_id, str)
            and isinstance(status, str)
            and isinstance(owner, str)
            and isinstance(task_type, str)
        ):
            return None
        if type(attempt) is not int:
            return None
        if not (batch_id is None or isinstance(batch_id, str)) or not isinstance(ts, int | float):
            return None
        started = data.get("started") is True
        started_at = data.get("started_at")
        if not isinstance(started_at, int | float) or isinstance(started_at, bool):
            started_at = None
        return cls(
            entry_id, task_id, status, owner, task_type, attempt, batch_id, ts, started, started_at
        )

    def to_json(self) -> JsonObject:
        """The event as ``GET events`` answers it: the wire's keys in their order, without
        the owner, then ``started`` (only when true), ``started_at`` (only when sent) and
        the stream ``id``."""
        out: dict[str, JsonValue] = {
            "task_id": self.task_id,
            "status": self.status,
            "task_type": self.task_type,
            "attempt": self.attempt,
            "batch_id": self.batch_id,
            "ts": self.ts,
        }
        if self.started:
            out["started"] = True
        if self.started_at is not None:
            out["started_at"] = self.started_at
        out["id"] = self.id
        return out


@dataclass(frozen=True, slots=True)
class EventPage:
    """What one read of the events stream got: the events it could interpret, and the
    position read up to (past entries it could not: None when it read nothing), from which
    the next read goes on."""

    events: tuple[TaskEvent, ...]
    position: str | None
