"""The wire format of stream messages and events (the key names are in :mod:`.keys`).

A task message carries ids only; the payload stays in PostgreSQL::

    XADD stream:simulate * m '{"task_id": "…", "task_type": "simulate", "attempt": 0}'

``attempt`` is the row's attempt when it was enqueued; the worker's claim is fenced on it,
so a duplicate delivery of an old message matches no row. An event's document is
:class:`EventBody`, what it is written from :class:`EventFields`, and a worker's entry in
the heartbeat table :class:`WorkerBeat`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from qtaskdist_jupyter.core.broker.keys import (
    PRIORITY_STREAMS,
    STREAMS,
)
from qtaskdist_jupyter.core.errors import MalformedMessage, UnknownTaskType
from qtaskdist_jupyter.core.jsontypes import JsonObject

__all__ = [
    "FIELD",
    "EventBody",
    "EventFields",
    "MessageBody",
    "TASK_ID_HEAD",
    "MalformedMessage",
    "TaskMessage",
    "WorkerBeat",
    "decode_event",
    "decode_event_or_none",
    "event_tail",
    "message_tail",
    "stream_for",
    "streams_of",
]

FIELD = "m"


class MessageBody(TypedDict):
    """A task message's JSON document (under :data:`FIELD`)."""

    task_id: str
    task_type: str
    # The row's attempt when it was enqueued: the claim is fenced on it.
    attempt: int


class EventBody(TypedDict):
    """An event's JSON document after its task id (docs/message-format.md), in its order."""

    status: str
    owner: str
    task_type: str
    attempt: int
    # The batch's id as text (None: a single submission).
    batch_id: str | None
    # When the event was written, epoch seconds.
    ts: float
    # A running event whose job began (only sent when true).
    started: NotRequired[bool]
    # An ended attempt's start, epoch seconds (only sent when known).
    started_at: NotRequired[float]


class EventFields(TypedDict):
    """What the broker writes a row's event (and task message) from (packing.pack_rows):
    the row's event columns (core.store.shapes.EventRow) and the flags of this write."""

    task_id: uuid.UUID
    task_type: str
    status: str
    owner: str
    attempt: int
    batch_id: uuid.UUID | None
    # Its task message goes onto the priority stream (a small submission).
    priority: NotRequired[bool]
    # A running event of a job that began.
    started: NotRequired[bool]
    # A completed or failed attempt's start, epoch seconds.
    started_at: NotRequired[float]


class WorkerBeat(TypedDict):
    """What a worker writes into the heartbeat table each beat (Broker.heartbeat adds
    ``ts``, the beat's time in epoch seconds). The table is read back as JSON
    (Broker.workers), narrowed by its readers."""

    host: str
    pid: int
    # The task types the worker consumes.
    task_types: list[str]
    in_flight: int
    # When the worker started, epoch seconds.
    started: float
    concurrency: int
    # Tasks it settled so far.
    completed: int


def stream_for(task_type: str) -> str:
    try:
        return STREAMS[task_type]
    except KeyError:
        raise UnknownTaskType(
            f"unknown task_type {task_type!r}; expected one of {sorted(STREAMS)}",
            field="task_type",
        ) from None


def streams_of(task_type: str) -> tuple[str, str]:
    """The streams a task of ``task_type`` may be on, in the order workers read them."""
    return PRIORITY_STREAMS[task_type], STREAMS[task_type]


@dataclass(frozen=True)
class TaskMessage:
    task_id: uuid.UUID
    task_type: str
    attempt: int

    def encode(self) -> dict[str, str]:
        return {FIELD: json.dumps(self.to_json(), separators=(",", ":"))}

    def to_json(self) -> MessageBody:
        return {"task_id": str(self.task_id), "task_type": self.task_type, "attempt": self.attempt}

    @classmethod
    def decode(cls, fields: dict[Any, Any]) -> TaskMessage:
        raw = fields.get(FIELD, fields.get(FIELD.encode()))
        try:
            if raw is None:
                raise KeyError(FIELD)
            data = json.loads(raw)
            msg = cls(
                task_id=uuid.UUID(str(data["task_id"])),
                task_type=str(data["task_type"]),
                attempt=data["attempt"],
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise MalformedMessage(f"malformed stream message: {str(fields)[:200]}") from exc
        if msg.task_type not in STREAMS or type(msg.attempt) is not int or msg.attempt < 0:
            raise MalformedMessage(f"malformed stream message: {str(fields)[:200]}")
        return msg


# Both wire formats start with the task id, so a bulk write can send ids plus one shared
# tail per kind of row and let Redis put them together (see Broker.publish): building
# 20,000 JSON documents in Python cost more than the XADDs themselves.
TASK_ID_HEAD = '{"task_id":"'
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)


def _tail(body: Mapping[str, object]) -> str:
    text = _COMPACT.encode({"task_id": "", **body})
    return text[len(TASK_ID_HEAD) :]


def message_tail(task_type: str, attempt: int) -> str:
    """What follows the task id in a task message: ``TASK_ID_HEAD + id + tail``."""
    return _tail({"task_type": task_type, "attempt": attempt})


def event_tail(
    status: str,
    *,
    owner: str,
    task_type: str,
    attempt: int,
    batch_id: uuid.UUID | str | None,
    ts: float,
    started: bool = False,
    started_at: float | None = None,
) -> str:
    """What follows the task id in an event (its keys in the order docs/message-format.md
    shows). ``started``: a running task's job began (a ``running`` event without it is
    the claim; the task waits behind the worker's other tasks until then).
    ``started_at``: an ended attempt's start, in seconds since the epoch (a quick task
    gets no ``started`` event: its end carries its start)."""
    body: EventBody = {
        "status": status,
        "owner": owner,
        "task_type": task_type,
        "attempt": attempt,
        "batch_id": str(batch_id) if batch_id else None,
        "ts": ts,
    }
    if started:
        body["started"] = True
    if started_at is not None:
        body["started_at"] = started_at
    return _tail(body)


def decode_event(entry_id: str, fields: dict[Any, Any]) -> JsonObject:
    """The JSON document an events-stream entry holds, with its stream ``id`` added (not
    checked further: TaskEvent.from_entry reads it)."""
    raw = fields.get(FIELD, fields.get(FIELD.encode()))
    if raw is None:
        raise KeyError(FIELD)
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise TypeError(f"an event is a JSON object, not {type(data).__name__}")
    event: JsonObject = data
    event["id"] = entry_id
    return event


def decode_event_or_none(entry_id: str, fields: dict[Any, Any]) -> JsonObject | None:
    """The event an events-stream entry holds, or None for one that is not ours to
    interpret (a reader skips it: never fatal)."""
    try:
        return decode_event(entry_id, fields)
    except (ValueError, TypeError, KeyError):
        return None
