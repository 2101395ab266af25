"""TaskQueue: the one face of the queue, for the REST API and for the workers.

Every write of a task's state goes through one of its verbs, and each verb owns the order
of its writes (nothing outside this package and the store / broker themselves calls a
store or broker write: tests/unit/test_queue_writes.py):

* **row first, then message, then event.** PostgreSQL is the truth: a message is XADDed
  (with the row's event, in one script call) only for a row already committed as
  ``queued``, so a fast worker never reads a message before its row says so. If that XADD
  fails the rows go back to ``pending`` (guarded), so a task is never ``queued`` without a
  message for long; if even that fails, the reconciler publishes it again
  (:meth:`requeue_lost`).
* **XACK after commit.** A worker's entries are acked in the same script call as the
  events of the rows it just committed (:meth:`settle`, :meth:`announce`); a crash in
  between leaves an entry another worker XAUTOCLAIMs, and the row (finished, or on a newer
  attempt) tells it to just ack.
* **events that only feed live views never undo a committed change** (:meth:`submit`
  without enqueue, :meth:`delete`, :meth:`cancel`).

API policy (quotas, the priority lane's bound, payload checks, which status a user may ask
for) stays in the server's TaskService; it decides and hands the verbs what to write.
Retries of the worker's writes across an outage are the caller's (``retrying``: the
worker passes its ``until_up`` where it always did; the default tries once).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import IO, TypeVar

from qtaskdist_jupyter.core.broker.wire import EventFields, TaskMessage
from qtaskdist_jupyter.core.errors import QueueUnavailable, TaskNotFound, TransitionError
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject
from qtaskdist_jupyter.core.queue.ports import (
    Ack,
    BrokerPort,
    Done,
    Retrying,
    StorePort,
    once,
)
from qtaskdist_jupyter.core.queue.rows import EventPage, TaskEvent, TaskRow, event_fields
from qtaskdist_jupyter.core.queue.upkeep import Upkeep
from qtaskdist_jupyter.core.status import DELETED, TaskStatus
from qtaskdist_jupyter.core.store.engine import NewTask
from qtaskdist_jupyter.core.store.shapes import EventRow, LightRow, TaskRecord

T = TypeVar("T")
# A running row to give back to the queue: (task id, attempt, meta to merge, why).
Release = tuple[uuid.UUID, int, JsonMap, str]
# How many due queued / running rows one reconciler pass looks at.
SCAN_LIMIT = 5000


def _events(rows: Sequence[TaskRow], **flags: bool) -> list[EventFields]:
    return [r.event_fields(**flags) for r in rows]


class TaskQueue:
    def __init__(self, store: StorePort, broker: BrokerPort) -> None:
        self.store = store
        self.broker = broker
        # The fleet's own writes (groups, reads, heartbeats, locks, retention).
        self.upkeep = Upkeep(store, broker)

    # ---- API side ----------------------------------------------------------------------
    async def submit(
        self,
        owner: str,
        new: Sequence[NewTask],
        decide: Callable[[int, int], bool],
        *,
        enqueue: bool,
        full: bool = False,
    ) -> list[EventRow]:
        """Insert ``new`` under ``owner``'s admission lock if ``decide(active, stored)``
        (the API's quota check, which raises to refuse) allows; a true answer puts the
        messages on the priority streams. With ``enqueue`` the rows are written
        ``queued`` and published, else ``pending`` with their events. Returns the rows as
        written (every column with ``full``: TaskRecord)."""
        if enqueue:
            await self.broker.ping()  # refuse up front rather than leave rows behind
        status = TaskStatus.QUEUED.value if enqueue else TaskStatus.PENDING.value
        rows, priority = await self.store.insert_admitted(
            owner, new, decide, status=status, full=full
        )
        if enqueue:
            await self._publish(rows, priority=priority)
        else:
            await self._emit_quietly(rows)
        return rows

    async def insert(
        self, new: Sequence[NewTask], *, enqueue: bool, full: bool = False, priority: bool = False
    ) -> list[EventRow]:
        """:meth:`submit` without the admission lock (the caller checked what it needs)."""
        if not enqueue:
            rows = await self.store.insert_many(new, full=full)
            # The rows are written and pending, as asked; answering 503 for a lost event
            # would make the caller retry and create them twice.
            await self._emit_quietly(rows)
            return rows
        await self.broker.ping()
        # Written as ``queued`` directly: the order of pending→queued (row first, XADD
        # second) without a second statement over every row.
        rows = await self.store.insert_many(new, status=TaskStatus.QUEUED.value, full=full)
        await self._publish(rows, priority=priority)
        return rows

    async def enqueue(
        self, task_ids: Sequence[uuid.UUID], *, priority: bool = False
    ) -> list[LightRow]:
        """pending → queued, then their messages; the rows that moved."""
        moved = await self.store.mark_queued(task_ids)
        await self._publish(moved, priority=priority)
        return moved

    async def cancel(self, task_id: uuid.UUID, owner: str | None) -> LightRow:
        """→ cancelled; the event and the workers' cancel notice follow. A queued message
        now matches no claim; a running task's worker learns of it from stream:cancels
        (or its heartbeat's row check), so losing that write to an outage delays the stop
        and loses nothing."""
        row = await self.store.cancel(task_id, owner)
        with contextlib.suppress(QueueUnavailable):
            await self.broker.cancelled([event_fields(row)])
        return row

    async def retry(
        self, task_id: uuid.UUID, owner: str, decide: Callable[[int], bool]
    ) -> LightRow:
        """A user's retry: failed | cancelled → queued under ``owner``'s admission lock if
        ``decide(active)`` allows (a true answer: the priority stream), then published."""
        await self.broker.ping()
        row, priority = await self.store.requeue_admitted(task_id, owner, decide)
        await self._publish([row], priority=priority)
        return row

    async def update(
        self, task_id: uuid.UUID, owner: str | None, fields: Mapping[str, object]
    ) -> TaskRecord:
        """Plain fields (name, tags, max_retries, labels): no status moves, no event."""
        return await self.store.update(task_id, owner, fields)

    async def delete(self, task_id: uuid.UUID, owner: str | None) -> None:
        row = await self.store.delete(task_id, owner)
        # Not a status of the row (the row is gone): it tells live tables to drop it.
        gone: EventRow = {
            "task_id": row["task_id"],
            "task_type": row["task_type"],
            "status": DELETED,
            "owner": row["owner"],
            "attempt": row["attempt"],
            "batch_id": row["batch_id"],
        }
        await self._emit_quietly([gone])

    async def events(
        self, after: str, *, count: int = 500, block_ms: int | None = None
    ) -> EventPage:
        """The events after ``after`` (XREAD, blocking up to ``block_ms``)."""
        entries = await self.broker.read_events(after, count=count, block_ms=block_ms)
        decoded = (TaskEvent.from_entry(eid, data) for eid, data in entries)
        events = tuple(e for e in decoded if e is not None)
        return EventPage(events, entries[-1][0] if entries else None)

    async def last_event_id(self) -> str:
        """Where a reader that starts now begins (the events stream's last id)."""
        return await self.broker.last_event_id()

    async def _publish(self, rows: Sequence[EventRow], *, priority: bool) -> None:
        """XADD rows just committed as ``queued`` with their events; if that fails the
        rows go back to ``pending`` (visible, enqueueable later)."""
        try:
            await self.broker.publish([event_fields(r, priority=priority) for r in rows])
        except QueueUnavailable:
            await self.store.unqueue([r["task_id"] for r in rows])
            raise

    async def _emit_quietly(self, rows: Sequence[EventRow]) -> None:
        """Events feed only the live views; the committed change stands without them."""
        with contextlib.suppress(QueueUnavailable):
            await self.broker.emit([event_fields(r) for r in rows])

    # ---- worker side -------------------------------------------------------------------
    async def claim(self, claims: Sequence[tuple[uuid.UUID, int]], worker: str) -> list[TaskRow]:
        """queued → running for each (task id, message attempt) that still matches."""
        return [TaskRow.from_row(r) for r in await self.store.claim_many(claims, worker)]

    async def announce(self, rows: Sequence[TaskRow], acks: Sequence[Ack]) -> None:
        """The claimed rows' running events, and the acks of entries that claimed nothing
        (one script call)."""
        await self.broker.settle(_events(rows), acks)

    async def take_over(self, task_id: uuid.UUID, attempt: int, worker: str) -> TaskRow | None:
        """running (attempt n, its worker gone) → running (n+1, ``worker``); None when the
        row moved on meanwhile."""
        try:
            return TaskRow.from_row(await self.store.takeover(task_id, attempt, worker))
        except (TransitionError, TaskNotFound):
            return None

    async def started(
        self, starts: Sequence[tuple[uuid.UUID, int, datetime]], retrying: Retrying = once
    ) -> list[TaskRow]:
        """Stamp ``started_at`` on the rows whose job began, then their running events
        marked ``started``."""
        stamped = await retrying(lambda: self.store.mark_started(starts), "start")
        rows = [TaskRow.from_row(r) for r in stamped]
        if rows:
            await retrying(lambda: self.broker.emit(_events(rows, started=True)), "emit")
        return rows

    async def annotate(self, task_id: uuid.UUID, attempt: int, meta: JsonMap) -> None:
        """Merge keys into a running task's meta_data (e.g. its provider job's id)."""
        await self.store.merge_meta(task_id, attempt, meta)

    async def store_array(self, task_id: uuid.UUID, attempt: int, name: str, fp: IO[bytes]) -> int:
        """One array of an attempt's result into the store; how many chunks it took."""
        return await self.store.put_array(task_id, attempt, name, fp)

    async def complete_many(self, done: Sequence[Done]) -> list[TaskRow]:
        """running → completed for each (task id, attempt, result, meta) still on that
        attempt, in one statement; the rows that moved (their events go with
        :meth:`settle`)."""
        return [TaskRow.from_row(r) for r in await self.store.complete_many(done)]

    async def fail(
        self,
        row: TaskRow,
        error: str,
        meta: JsonObject,
        *,
        dead: Mapping[str, object] | None = None,
        retrying: Retrying = once,
    ) -> TaskRow | None:
        """running → failed; then, with ``dead`` (the entry's fields), a stream:dead record
        (its retries are exhausted). None when the row moved on meanwhile (cancelled or
        taken over: someone else's now)."""
        call = self.store.fail
        try:
            got = await retrying(lambda: call(row.task_id, row.attempt, error, meta), "fail")
        except (TransitionError, TaskNotFound):
            return None
        if dead is not None:
            reason = f"retries exhausted: {error}"
            await retrying(lambda: self.broker.dead_letter(reason, dead), "dead")
        return TaskRow.from_row(got)

    async def retry_later(
        self,
        row: TaskRow,
        error: str,
        delay_s: float,
        meta: JsonMap,
        *,
        retrying: Retrying = once,
    ) -> TaskRow | None:
        """running → queued with a backoff (retry_count + 1, scheduled_for = now +
        ``delay_s``), then its message into the delay set; None when the row moved on."""
        call = self.store.retry_later
        try:
            got = await retrying(
                lambda: call(row.task_id, row.attempt, error, delay_s, meta), "retry"
            )
        except (TransitionError, TaskNotFound):
            return None
        msg = TaskMessage(row.task_id, row.task_type, row.attempt)
        await retrying(lambda: self.broker.enqueue_later(msg, delay_s), "delay")
        return TaskRow.from_row(got)

    async def settle(self, rows: Sequence[TaskRow], acks: Sequence[Ack]) -> None:
        """The events of rows just committed, and the acks of the entries they came from
        (one script call): the end of every batch a worker settles."""
        await self.broker.settle(_events(rows), acks)

    async def release(
        self, releases: Sequence[Release], retrying: Retrying = once
    ) -> list[TaskRow]:
        """running → queued (same retry budget) for each (task id, attempt, meta, why)
        still on that attempt, then their messages; the rows released."""
        moved: list[TaskRow] = []
        for task_id, attempt, meta, why in releases:
            try:
                got = await self.store.release(task_id, attempt, meta, why=why)
            except (TransitionError, TaskNotFound):
                continue  # it moved on while we looked: someone else handled it
            moved.append(TaskRow.from_row(got))
        if moved:  # rows as released: status queued
            await retrying(lambda: self.broker.publish(_events(moved)), "re-enqueue")
        return moved

    async def requeue_lost(self, streams: Sequence[str], task_types: Sequence[str]) -> int:
        """Publish again the due ``queued`` rows of ``task_types`` that no stream (nor the
        delay set) holds a message for; how many."""
        held: set[str] = set()
        for stream in streams:
            held |= await self.broker.queued_ids(stream)
        lost = [
            r
            for r in await self.store.due_queued(limit=SCAN_LIMIT)
            if r["task_type"] in task_types and r["task_id"].hex not in held
        ]
        if lost:
            # Their rows are still ``queued``: a message (and a ``queued`` event) each.
            await self.broker.publish([event_fields(r) for r in lost])
        return len(lost)

    async def running(self) -> list[TaskRow]:
        """Up to SCAN_LIMIT running rows, with their workers (for the reconciler)."""
        return [TaskRow.from_row(r) for r in await self.store.running_rows(limit=SCAN_LIMIT)]

    async def rows(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskRow]:
        """The rows of these tasks that exist, by id."""
        return {r["task_id"]: TaskRow.from_row(r) for r in await self.store.get_many(task_ids)}

    async def ack(self, acks: Sequence[Ack], retrying: Retrying = once) -> None:
        """XACK + XDEL entries that have nothing left to write (their rows say so)."""
        await retrying(lambda: self.broker.ack(acks), "ack")

    async def promote_due(self) -> int:
        """Move the delayed messages whose time has come onto their streams; how many."""
        return await self.broker.promote_due()

    async def dead_letter(self, reason: str, fields: Mapping[str, object]) -> None:
        """An entry no worker can use, onto stream:dead (it is acked with its batch)."""
        await self.broker.dead_letter(reason, fields)
