"""The arguments of ``lua/publish.lua``: task messages and events of many rows in one call.

A task message and an event are JSON objects that start with the task id
(:data:`~qtaskdist_jupyter.core.broker.wire.TASK_ID_HEAD`), and rows of one kind share
everything after it (the *tail*: task type and attempt for a message; status, owner, type,
attempt, batch and time for an event). So a call carries each distinct tail once and, per
row, only its id and which tails it uses; the script writes ``head .. id .. tail``. Building
one JSON document per row in Python cost more than the XADDs themselves
(benchmarks/README.md, issue 12).

Two pending ``simulate`` rows of one owner and one batch-less submission, with their
messages on the normal stream, and one entry to acknowledge, make this call (ARGV)::

    [100000, "qtaskdist",
     "<id 1>\\t2\\t5\\t6\\n<id 2>\\t2\\t5\\t6",           # rows: id, stream, message, event
     "2\\t1712345678901-0",                                # acks: stream, entry id
     '","task_type":"simulate","attempt":0}',             # ARGV[5]: the message tail
     '","status":"queued","owner":"alice",…,"ts":…}']    # ARGV[6]: the event tail

Streams are KEYS indexes into :data:`PUBLISH_KEYS`, tails ARGV indexes (1-based, as Lua
counts). Lines end with a newline and fields with a tab: neither can occur in a task id,
a KEYS index or a stream entry id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from qtaskdist_jupyter.core.broker.keys import EVENTS_STREAM, GROUP, PRIORITY_STREAMS, STREAMS
from qtaskdist_jupyter.core.broker.wire import EventFields, event_tail, message_tail

# KEYS of every publish.lua call: the events stream first, then every task stream.
PUBLISH_KEYS: list[str] = [EVENTS_STREAM, *STREAMS.values(), *PRIORITY_STREAMS.values()]
KEY_INDEX: dict[str, int] = {stream: i for i, stream in enumerate(PUBLISH_KEYS, start=1)}
# A row's stream index when it gets an event only (no task message).
NO_STREAM = 0
# Rows per script call: a call blocks Redis while it runs, so calls stay short.
ROWS_PER_CALL = 1000
_FIELD_SEP = "\t"
_LINE_SEP = "\n"
_FIRST_TAIL = 5  # ARGV index of the first tail


class PublishCall:
    """The ARGV of one publish.lua call, filled row by row."""

    def __init__(self, events_maxlen: int) -> None:
        self.events_maxlen = events_maxlen
        self.rows: list[str] = []
        self.acks: list[str] = []
        self.tails: list[str] = []
        self._tail_index: dict[tuple[Any, ...], int] = {}

    def tail(self, key: tuple[Any, ...], make: Callable[..., str], *args: Any) -> int:
        """The ARGV index of the tail ``key`` names; ``make(*args)`` builds it the first
        time (rows of one kind, the common case, find it made)."""
        index = self._tail_index.get(key)
        if index is None:
            index = self._tail_index[key] = _FIRST_TAIL + len(self.tails)
            self.tails.append(make(*args))
        return index

    def add_row(self, task_id: uuid.UUID, stream: int, message: int, event: int) -> None:
        self.rows.append(f"{task_id}{_FIELD_SEP}{stream}{_FIELD_SEP}{message}{_FIELD_SEP}{event}")

    def add_ack(self, stream: str, entry_id: str) -> None:
        """XACK + XDEL of this entry after the rows are written."""
        self.acks.append(f"{KEY_INDEX[stream]}{_FIELD_SEP}{entry_id}")

    def argv(self) -> list[Any]:
        rows, acks = _LINE_SEP.join(self.rows), _LINE_SEP.join(self.acks)
        return [self.events_maxlen, GROUP, rows, acks, *self.tails]


def _event_tail(
    status: str,
    owner: str,
    ttype: str,
    attempt: int,
    batch: uuid.UUID | None,
    ts: float,
    started: bool,
    started_at: float | None,
) -> str:
    return event_tail(
        status,
        owner=owner,
        task_type=ttype,
        attempt=attempt,
        batch_id=batch,
        ts=ts,
        started=started,
        started_at=started_at,
    )


def pack_rows(
    rows: Iterable[EventFields],
    *,
    messages: bool,
    events_maxlen: int,
    ts: float,
    acks: Sequence[tuple[str, str]] = (),
) -> list[list[Any]]:
    """The ARGV of each publish.lua call that writes ``rows`` (wire.EventFields: the
    event columns and, for a small submission, a true ``priority``; a true ``started``
    marks a running task whose job began; ``started_at``, an ended attempt's start in
    epoch seconds): an event for each, and with ``messages`` its task message too. The
    ``acks`` go with the last call (alone in one call when there are no rows)."""
    rows = list(rows)
    calls: list[PublishCall] = []
    for start in range(0, len(rows), ROWS_PER_CALL):
        call = PublishCall(events_maxlen)
        for r in rows[start : start + ROWS_PER_CALL]:
            ttype, attempt, status = r["task_type"], r["attempt"], str(r["status"])
            stream = message = NO_STREAM
            if messages:
                # A small submission goes to the stream workers read first.
                stream = KEY_INDEX[(PRIORITY_STREAMS if r.get("priority") else STREAMS)[ttype]]
                message = call.tail(("m", ttype, attempt), message_tail, ttype, attempt)
            owner, batch, started = r["owner"], r.get("batch_id"), bool(r.get("started"))
            # An ended attempt's start (one per unit: its tasks share a tail).
            started_at = r.get("started_at")
            event = call.tail(
                ("e", status, owner, ttype, attempt, batch, started, started_at),
                _event_tail,
                status,
                owner,
                ttype,
                attempt,
                batch,
                ts,
                started,
                started_at,
            )
            call.add_row(r["task_id"], stream, message, event)
        calls.append(call)
    if acks:
        if not calls:
            calls.append(PublishCall(events_maxlen))
        for stream, entry_id in acks:
            calls[-1].add_ack(stream, entry_id)
    return [c.argv() for c in calls]
