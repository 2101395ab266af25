"""The wire format of stream messages and events (the key names are in :mod:`.keys`).

A task message carries ids only; the payload stays in PostgreSQL::

    XADD stream:simulate * m '{"task_id": "…", "task_type": "simulate", "attempt": 0}'

``attempt`` is the row's attempt when it was enqueued; the worker's claim is fenced on it,
so a duplicate delivery of an old message matches no row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from qtaskdist_jupyter.core.broker.keys import (
    PRIORITY_STREAMS,
    STREAMS,
)
from qtaskdist_jupyter.core.errors import MalformedMessage, UnknownTaskType

__all__ = [
    "FIELD",
    "TASK_ID_HEAD",
    "MalformedMessage",
    "TaskMessage",
    "decode_event",
    "decode_event_or_none",
    "event_tail",
    "message_tail",
    "stream_for",
    "streams_of",
]

FIELD = "m"


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

    def to_json(self) -> dict[str, Any]:
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


def _tail(body: dict[str, Any]) -> str:
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
    body: dict[str, Any] = {
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


def decode_event(entry_id: str, fields: dict[Any, Any]) -> dict[str, Any]:
    raw = fields.get(FIELD, fields.get(FIELD.encode()))
    if raw is None:
        raise KeyError(FIELD)
    data = json.loads(raw)
    data["id"] = entry_id
    return data


def decode_event_or_none(entry_id: str, fields: dict[Any, Any]) -> dict[str, Any] | None:
    """The event an events-stream entry holds, or None for one that is not ours to
    interpret (a reader skips it: never fatal)."""
    try:
        return decode_event(entry_id, fields)
    except (ValueError, TypeError, KeyError):
        return None
