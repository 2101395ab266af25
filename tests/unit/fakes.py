"""In-memory implementations of the queue facade's two ports (core/queue/ports.py), for
unit tests of TaskQueue and the worker's collaborators with no PostgreSQL and no Redis.

They keep the rules the real ones enforce and the facade relies on: every transition is
guarded on the row's status (and attempt), answering TransitionError / TaskNotFound as the
store does; a claim skips rows scheduled for later; entries stay on their stream until
acked; events get increasing ids. ``FakeBroker.down`` makes every call answer "Redis
unreachable" (QueueUnavailable), ``fail_next`` only the named calls, once each. Rows go out
as the store's shapes (core/store/shapes.py) with the columns its statements return.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeVar

from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS, STREAMS
from qtaskdist_jupyter.core.broker.wire import EventFields, TaskMessage, WorkerBeat
from qtaskdist_jupyter.core.errors import QueueUnavailable, TaskNotFound, TransitionError
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject
from qtaskdist_jupyter.core.status import FINISHED, RETRYABLE, TaskStatus
from qtaskdist_jupyter.core.store.engine import NewTask
from qtaskdist_jupyter.core.store.shapes import (
    DeletedRow,
    EndedRow,
    EventRow,
    LightRow,
    RunningRow,
    TaskRecord,
)
from qtaskdist_jupyter.core.task_times import carried_start, start_at_end

S = TaskStatus
T = TypeVar("T")
ACTIVE = (S.PENDING, S.QUEUED, S.RUNNING)
# What a transition answers (statements.LIGHT, with the worker for running_rows).
LIGHT = (
    "task_id",
    "task_type",
    "status",
    "owner",
    "attempt",
    "batch_id",
    "payload",
    "retry_count",
    "max_retries",
    "created_at",
    "queued_at",
    "claimed_at",
    "started_at",
    "meta_data",
)
EVENT = ("task_id", "task_type", "status", "owner", "attempt", "batch_id")
DELETED = ("task_id", "task_type", "owner", "attempt", "batch_id")


def _now() -> datetime:
    return datetime.now(UTC)


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self.arrays: dict[tuple[uuid.UUID, int, str], bytes] = {}
        self.calls: list[str] = []

    # ---- helpers -----------------------------------------------------------------
    def _light(self, row: dict[str, Any]) -> LightRow:
        return LightRow(**{c: row[c] for c in LIGHT})

    def _row(self, task_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        row = self.rows.get(task_id)
        if row is None or (owner is not None and row["owner"] != owner):
            raise TaskNotFound(f"task {task_id} not found", task_id=str(task_id))
        return row

    def _move(
        self,
        task_id: uuid.UUID,
        action: str,
        allowed: Iterable[str],
        values: dict[str, Any],
        attempt: int | None = None,
        owner: str | None = None,
    ) -> LightRow:
        self.calls.append(action)
        row = self._row(task_id, owner)
        if attempt is not None and row["attempt"] != attempt:
            raise TransitionError(f"cannot {action} task {task_id}: attempt {attempt} is stale")
        if row["status"] not in {str(s) for s in allowed}:
            raise TransitionError(f"cannot {action} task {task_id}: it is {row['status']}")
        row.update(values)
        return self._light(row)

    def _counts(self, owner: str) -> tuple[int, int]:
        mine = [r for r in self.rows.values() if r["owner"] == owner]
        return sum(r["status"] in ACTIVE for r in mine), len(mine)

    # ---- writes --------------------------------------------------------------------
    async def insert_many(
        self, new: Sequence[NewTask], *, status: str = S.PENDING.value, full: bool = False
    ) -> list[EventRow]:
        self.calls.append("insert")
        out: list[EventRow] = []
        for n in new:
            row = {**n.row(), "status": status, "attempt": 0, "retry_count": 0}
            row |= {"created_at": _now(), "queued_at": _now(), "worker": None, "result": None}
            row |= {"claimed_at": None, "started_at": None, "finished_at": None}
            row |= {"scheduled_for": None, "error": None, "updated_at": _now()}
            self.rows[row["task_id"]] = row
            out.append(TaskRecord(**row) if full else EventRow(**{c: row[c] for c in EVENT}))
        return out

    async def insert_admitted(
        self,
        owner: str,
        new: Sequence[NewTask],
        decide: Callable[[int, int], T],
        *,
        status: str = S.PENDING.value,
        full: bool = False,
    ) -> tuple[list[EventRow], T]:
        verdict = decide(*self._counts(owner))
        return await self.insert_many(new, status=status, full=full), verdict

    async def mark_queued(self, task_ids: Sequence[uuid.UUID]) -> list[LightRow]:
        self.calls.append("mark_queued")
        moved = [self.rows[t] for t in task_ids if self.rows[t]["status"] == S.PENDING]
        for row in moved:
            row["status"] = S.QUEUED.value
        return [self._light(r) for r in moved]

    async def unqueue(self, task_ids: Sequence[uuid.UUID]) -> None:
        self.calls.append("unqueue")
        for t in task_ids:
            if self.rows[t]["status"] == S.QUEUED:
                self.rows[t]["status"] = S.PENDING.value

    async def cancel(self, task_id: uuid.UUID, owner: str | None) -> LightRow:
        values = {"status": S.CANCELLED.value, "finished_at": _now()}
        return self._move(task_id, "cancel", ACTIVE, values, owner=owner)

    async def requeue_admitted(
        self, task_id: uuid.UUID, owner: str, decide: Callable[[int], T]
    ) -> tuple[LightRow, T]:
        verdict = decide(self._counts(owner)[0])
        values = {"status": S.QUEUED.value, "retry_count": 0, "error": None, "result": None}
        values |= {"scheduled_for": None, "worker": None, "started_at": None}
        row = self._move(task_id, "retry", RETRYABLE, values, owner=owner)
        return row, verdict

    async def update(
        self, task_id: uuid.UUID, owner: str | None, fields: Mapping[str, object]
    ) -> TaskRecord:
        self.calls.append("update")
        row = self._row(task_id, owner)
        row.update(fields)
        return TaskRecord(**row)

    async def delete(self, task_id: uuid.UUID, owner: str | None) -> DeletedRow:
        self.calls.append("delete")
        row = self._row(task_id, owner)
        if row["status"] not in FINISHED:
            raise TransitionError(f"cannot delete task {task_id}: it is {row['status']}")
        del self.rows[task_id]
        return DeletedRow(**{k: row[k] for k in DELETED})

    async def claim_many(
        self, claims: Sequence[tuple[uuid.UUID, int]], worker: str
    ) -> list[LightRow]:
        self.calls.append("claim")
        out = []
        for task_id, attempt in claims:
            row = self.rows.get(task_id)
            due = row is not None and (row["scheduled_for"] or _now()) <= _now()
            if row and due and row["status"] == S.QUEUED and row["attempt"] == attempt:
                row |= {"status": S.RUNNING.value, "attempt": attempt + 1, "worker": worker}
                row |= {"claimed_at": _now(), "started_at": None}
                out.append(self._light(row))
            elif row and row["status"] == S.RUNNING and row["attempt"] == attempt + 1:
                # The same claim again (its answer was lost): the row it moved, unchanged.
                if row["worker"] == worker and row["started_at"] is None:
                    out.append(self._light(row))
        return out

    async def mark_started(
        self, starts: Sequence[tuple[uuid.UUID, int, datetime]]
    ) -> list[EventRow]:
        self.calls.append("start")
        out = []
        for task_id, attempt, started in starts:
            row = self.rows.get(task_id)
            if row and row["status"] == S.RUNNING and row["attempt"] == attempt:
                if row["started_at"] is None:
                    row["started_at"] = started
                    out.append(EventRow(**{c: row[c] for c in EVENT}))
        return out

    async def takeover(self, task_id: uuid.UUID, attempt: int, worker: str) -> LightRow:
        row = self._row(task_id)
        values = {"attempt": row["attempt"] + 1, "worker": worker, "claimed_at": _now()}
        return self._move(task_id, "take over", [S.RUNNING], values, attempt=attempt)

    async def complete_many(
        self, results: Sequence[tuple[uuid.UUID, int, JsonObject, JsonObject]]
    ) -> list[EndedRow]:
        self.calls.append("complete")
        out = []
        for task_id, attempt, result, meta in results:
            row = self.rows.get(task_id)
            if row and row["status"] == S.RUNNING and row["attempt"] == attempt:
                row |= {"status": S.COMPLETED.value, "result": result, "finished_at": _now()}
                row["meta_data"] = {**row["meta_data"], **meta}
                row["started_at"] = start_at_end(row["started_at"], carried_start(meta))
                out.append(EndedRow(**{c: row[c] for c in (*EVENT, "started_at")}))
        return out

    async def fail(
        self, task_id: uuid.UUID, attempt: int, error: str, meta: JsonObject
    ) -> LightRow:
        values = {"status": S.FAILED.value, "error": error, "finished_at": _now()}
        values["meta_data"] = {**self._row(task_id)["meta_data"], **meta}
        values["started_at"] = start_at_end(self._row(task_id)["started_at"], carried_start(meta))
        return self._move(task_id, "fail", [S.RUNNING], values, attempt=attempt)

    async def retry_later(
        self, task_id: uuid.UUID, attempt: int, error: str, delay_s: float, meta: JsonMap
    ) -> LightRow:
        row = self._row(task_id)
        later = _now() + timedelta(seconds=delay_s)
        values = {"status": S.QUEUED.value, "error": error, "scheduled_for": later}
        values |= {"retry_count": row["retry_count"] + 1, "started_at": None}
        values["meta_data"] = {**row["meta_data"], **meta}
        return self._move(task_id, "retry later", [S.RUNNING], values, attempt=attempt)

    async def release(
        self, task_id: uuid.UUID, attempt: int, meta: JsonMap | None = None, *, why: str
    ) -> LightRow:
        row = self._row(task_id)
        history = [*row["meta_data"].get("attempts", []), {"outcome": "released", "error": why}]
        values = {"status": S.QUEUED.value, "worker": None, "scheduled_for": None}
        values |= {"started_at": None, "meta_data": {**row["meta_data"], **(meta or {})}}
        values["meta_data"]["attempts"] = history
        return self._move(task_id, "release", [S.RUNNING], values, attempt=attempt)

    async def merge_meta(self, task_id: uuid.UUID, attempt: int, meta: JsonMap) -> LightRow:
        values = {"meta_data": {**self._row(task_id)["meta_data"], **meta}}
        return self._move(task_id, "annotate", [S.RUNNING], values, attempt=attempt)

    async def put_array(self, task_id: uuid.UUID, attempt: int, name: str, fp: IO[bytes]) -> int:
        self.calls.append("put_array")
        self.arrays[(task_id, attempt, name)] = fp.read()
        return 1

    # ---- reads ---------------------------------------------------------------------
    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> list[TaskRecord]:
        return [TaskRecord(**self.rows[t]) for t in task_ids if t in self.rows]

    async def due_queued(self, *, limit: int = 1000) -> list[LightRow]:
        due = [
            r
            for r in self.rows.values()
            if r["status"] == S.QUEUED and (r["scheduled_for"] or _now()) <= _now()
        ]
        return [self._light(r) for r in due[:limit]]

    async def running_rows(self, *, limit: int = 1000) -> list[RunningRow]:
        running = [r for r in self.rows.values() if r["status"] == S.RUNNING]
        return [RunningRow(**self._light(r), worker=r["worker"]) for r in running[:limit]]

    async def gc(self, age_s: float, *, batch: int, max_batches: int | None = None) -> int:
        return 0


class FakeBroker:
    def __init__(self) -> None:
        # stream -> [(entry id, fields)] not yet acked; the group's deliveries by entry id.
        self.streams: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.delivered: dict[str, tuple[str, float]] = {}
        self.events: list[tuple[str, JsonObject]] = []
        self.delayed: list[tuple[str, TaskMessage, float]] = []
        self.dead: list[tuple[str, Mapping[str, object]]] = []
        self.cancels: list[str] = []
        self.beats: dict[str, JsonObject] = {}
        self.down = False
        self.fail_next: set[str] = set()
        self.calls: list[str] = []
        self._seq = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down or name in self.fail_next:
            self.fail_next.discard(name)
            raise QueueUnavailable("Redis unreachable: fake outage")

    def _id(self) -> str:
        self._seq += 1
        return f"{self._seq}-0"

    def _event(self, r: EventFields) -> None:
        batch = r["batch_id"]
        body = {"task_id": str(r["task_id"]), "status": str(r["status"]), "owner": r["owner"]}
        body |= {"task_type": r["task_type"], "attempt": r["attempt"]}
        body |= {"batch_id": str(batch) if batch else None, "ts": time.time()}
        if r.get("started"):
            body["started"] = True
        eid = self._id()
        self.events.append((eid, {**json.loads(json.dumps(body)), "id": eid}))

    def entries(self) -> list[tuple[str, str, TaskMessage]]:
        """Every entry still on a task stream: (stream, entry id, message)."""
        return [
            (s, eid, TaskMessage.decode(f)) for s, got in self.streams.items() for eid, f in got
        ]

    # ---- writes --------------------------------------------------------------------
    async def publish(self, rows: Iterable[EventFields]) -> None:
        self._call("publish")
        for r in rows:
            streams = PRIORITY_STREAMS if r.get("priority") else STREAMS
            msg = TaskMessage(r["task_id"], r["task_type"], r["attempt"])
            stream = streams[r["task_type"]]
            self.streams.setdefault(stream, []).append((self._id(), msg.encode()))
            self._event(r)

    async def emit(self, rows: Iterable[EventFields]) -> None:
        self._call("emit")
        for r in rows:
            self._event(r)

    async def settle(self, events: Sequence[EventFields], acks: Sequence[tuple[str, str]]) -> None:
        self._call("settle")
        for r in events:
            self._event(r)
        self._ack(acks)

    async def cancelled(self, rows: Sequence[EventFields]) -> None:
        self._call("cancelled")
        for r in rows:
            self._event(r)
            self.cancels.append(str(r["task_id"]))

    async def enqueue_later(self, message: TaskMessage, delay_s: float) -> None:
        self._call("enqueue_later")
        self.delayed.append((STREAMS[message.task_type], message, time.time() + delay_s))

    async def ack(self, acks: Sequence[tuple[str, str]]) -> None:
        self._call("ack")
        self._ack(acks)

    def _ack(self, acks: Sequence[tuple[str, str]]) -> None:
        gone = set(acks)
        for stream, got in self.streams.items():
            got[:] = [(eid, f) for eid, f in got if (stream, eid) not in gone]
        for _stream, eid in acks:
            self.delivered.pop(eid, None)

    async def dead_letter(self, reason: str, fields: Mapping[str, object]) -> None:
        self._call("dead_letter")
        self.dead.append((reason, fields))

    async def promote_due(self, *, limit: int = 500) -> int:
        """The delayed messages whose time has come, onto their streams."""
        self._call("promote_due")
        due = [d for d in self.delayed if d[2] <= time.time()][:limit]
        for stream, msg, _at in due:
            self.streams.setdefault(stream, []).append((self._id(), msg.encode()))
        self.delayed = [d for d in self.delayed if d not in due]
        return len(due)

    # ---- reads and bookkeeping ----------------------------------------------------
    async def ping(self) -> None:
        self._call("ping")

    async def read(
        self, streams: Sequence[str], consumer: str, *, count: int, block_ms: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """XREADGROUP ``>``: entries no consumer was given yet."""
        self._call("read")
        out = []
        for stream in streams:
            for eid, fields in self.streams.get(stream, []):
                if eid not in self.delivered and len(out) < count:
                    self.delivered[eid] = (consumer, time.monotonic())
                    out.append((stream, eid, fields))
        return out

    async def autoclaim(
        self, stream: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        self._call("autoclaim")
        out = []
        for eid, fields in self.streams.get(stream, []):
            got = self.delivered.get(eid)
            if got and (time.monotonic() - got[1]) * 1000 >= min_idle_ms and len(out) < count:
                self.delivered[eid] = (consumer, time.monotonic())
                out.append((stream, eid, fields))
        return out

    async def touch(self, stream: str, consumer: str, entry_ids: Sequence[str]) -> None:
        """XCLAIM justid: the entries' idle time starts again."""
        self._call("touch")
        for eid in entry_ids:
            if eid in self.delivered:
                self.delivered[eid] = (consumer, time.monotonic())

    async def heartbeat(self, name: str, info: WorkerBeat) -> None:
        self._call("heartbeat")
        self.beats[name] = json.loads(json.dumps({**info, "ts": time.time()}))  # as stored

    async def forget_worker(self, name: str) -> None:
        self._call("forget_worker")
        self.beats.pop(name, None)

    async def read_events(
        self, after: str, *, count: int = 500, block_ms: int | None = None
    ) -> list[tuple[str, JsonObject | None]]:
        self._call("read_events")
        seq = int(after.split("-")[0])
        later = [(eid, dict(e)) for eid, e in self.events if int(eid.split("-")[0]) > seq]
        return [(eid, e) for eid, e in later[:count]]

    async def last_event_id(self) -> str:
        return self.events[-1][0] if self.events else "0-0"

    async def queued_ids(self, stream: str) -> set[str]:
        ids = {TaskMessage.decode(f).task_id.hex for _eid, f in self.streams.get(stream, [])}
        return ids | {m.task_id.hex for s, m, _at in self.delayed if s == stream}

    async def ensure_groups(self, streams: Iterable[str]) -> None:
        self._call("ensure_groups")

    async def take_reconcile_lock(self, ttl_s: float) -> bool:
        return True

    async def take_gc_lock(self, ttl_s: float) -> bool:
        return True

    async def workers(self) -> dict[str, JsonObject]:
        return dict(self.beats)
