"""TaskStore's guarded state transitions: a mixin it inherits, so all SQL stays in the store.

Each transition is one ``UPDATE … WHERE status IN (…) [AND attempt = :n] RETURNING …``.
When no row matches, :class:`TransitionError` says what the row holds instead, so a stale
worker or a double click changes nothing and learns why.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import (
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qtaskdist_jupyter.core import fastjson
from qtaskdist_jupyter.core.errors import TaskNotFound, TransitionError
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject
from qtaskdist_jupyter.core.models import TASKS
from qtaskdist_jupyter.core.status import RETRYABLE, TaskStatus
from qtaskdist_jupyter.core.store.engine import db_errors as _db_errors
from qtaskdist_jupyter.core.store.engine import shaped, shaped_one
from qtaskdist_jupyter.core.store.shapes import EndedRow, EventRow, LightRow
from qtaskdist_jupyter.core.store.statements import _CLAIM, _START, LIGHT
from qtaskdist_jupyter.core.task_times import carried_start

tasks = TASKS
S = TaskStatus


def _utc_iso(ts: Any) -> Any:
    """A timestamp as the worker writes them (Python's isoformat in UTC), whatever the
    session's TimeZone."""
    return func.to_char(func.timezone("UTC", ts), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')


def _carried(meta: JsonObject) -> str | None:
    started = carried_start(meta)
    return started.isoformat() if started else None


def _start_at_end(meta: JsonObject) -> Any:
    """``COALESCE(started_at, <the start the attempt's end carries>)`` (task_times)."""
    return func.coalesce(tasks.c.started_at, carried_start(meta))


def _ended_unfinished(meta: Any, outcome: str, why: str) -> Any:
    """``meta`` with an entry for the attempt that ends here unfinished appended to its
    ``attempts`` (a finished attempt gets its entry from the worker, see
    qtaskdist_worker.units.profile). In an UPDATE's SET every column still holds the old
    row: the lost attempt's number, worker, claim and start (None when its job never
    began)."""
    fields = {
        "attempt": tasks.c.attempt,
        "worker": tasks.c.worker,
        "claimed_at": _utc_iso(tasks.c.claimed_at),
        "started_at": _utc_iso(tasks.c.started_at),
        "finished_at": _utc_iso(func.now()),
        "outcome": outcome,
        "error": why,
    }
    entry = func.jsonb_build_object(*(part for pair in fields.items() for part in pair))
    history = func.coalesce(tasks.c.meta_data["attempts"], literal_column("'[]'::jsonb"))
    return func.jsonb_set(meta, literal_column("'{attempts}'"), history.op("||")(entry))


class Transitions:
    """Every status change of a task row; mixed into :class:`~.store.TaskStore`."""

    engine: AsyncEngine
    drop_arrays: Callable[[uuid.UUID], Awaitable[None]]  # ResultArrays.drop_arrays

    async def _why(
        self,
        conn: AsyncConnection,
        task_id: uuid.UUID,
        owner: str | None,
        action: str,
        allowed: Iterable[str],
        attempt: int | None = None,
    ) -> NoReturn:
        """Raise the error that explains why a guarded statement matched nothing."""
        stmt = select(tasks.c.status, tasks.c.attempt).where(tasks.c.task_id == task_id)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=str(task_id))
        if attempt is not None and row.attempt != attempt:
            raise TransitionError(
                f"cannot {action} task {task_id}: attempt {attempt} is stale "
                f"(the task is on attempt {row.attempt}, status {row.status})",
                task_id=str(task_id),
                status=row.status,
                attempt=row.attempt,
            )
        raise TransitionError(
            f"cannot {action} task {task_id}: it is {row.status} "
            f"(allowed from {', '.join(sorted(allowed))})",
            task_id=str(task_id),
            status=row.status,
        )

    async def _transition(
        self,
        task_id: uuid.UUID,
        *,
        action: str,
        allowed: Iterable[str],
        values: Mapping[str, object],
        attempt: int | None = None,
        owner: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> LightRow:
        """``conn``: run on that connection (inside its transaction); else on a fresh one."""
        allowed = [str(s) for s in allowed]
        cond = [tasks.c.task_id == task_id, tasks.c.status.in_(allowed)]
        if attempt is not None:
            cond.append(tasks.c.attempt == attempt)
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        stmt = (
            update(tasks)
            .where(*cond)
            .values(**values, updated_at=func.now())
            .returning(*LIGHT, tasks.c.status)
        )
        if conn is not None:
            return await self._one_moved(conn, stmt, task_id, owner, action, allowed, attempt)
        async with self.engine.connect() as fresh:
            return await self._one_moved(fresh, stmt, task_id, owner, action, allowed, attempt)

    async def _one_moved(
        self,
        conn: AsyncConnection,
        stmt: Any,
        task_id: uuid.UUID,
        owner: str | None,
        action: str,
        allowed: list[str],
        attempt: int | None,
    ) -> LightRow:
        row = (await conn.execute(stmt)).first()
        if row is None:
            await self._why(conn, task_id, owner, action, allowed, attempt)
        return shaped_one(LightRow, row)

    @_db_errors
    async def mark_queued(self, task_ids: Sequence[uuid.UUID]) -> list[LightRow]:
        """pending → queued for many rows; returns the rows that moved."""
        stmt = (
            update(tasks)
            .where(tasks.c.task_id.in_(task_ids), tasks.c.status == S.PENDING)
            .values(status=S.QUEUED.value, updated_at=func.now())
            .returning(*LIGHT)
        )
        async with self.engine.connect() as conn:
            return shaped(LightRow, await conn.execute(stmt))

    @_db_errors
    async def claim_many(
        self, claims: Sequence[tuple[uuid.UUID, int]], worker: str
    ) -> list[LightRow]:
        """queued → running for every (task_id, attempt) that still matches, in one UPDATE.

        Rows whose ``scheduled_for`` lies in the future are not claimed: they were re-queued
        with a backoff and a later message will bring them back.
        """
        if not claims:
            return []
        params = {"ids": [t for t, _a in claims], "attempts": [a for _t, a in claims]}
        params["worker"] = worker
        async with self.engine.connect() as conn:
            return shaped(LightRow, await conn.execute(_CLAIM, params))

    @_db_errors
    async def mark_started(
        self, starts: Sequence[tuple[uuid.UUID, int, datetime]]
    ) -> list[EventRow]:
        """Stamp ``started_at`` on the running rows of these (task_id, attempt, start) whose
        job began (one statement for a worker's batch); returns the rows stamped, with
        the columns of their events."""
        if not starts:
            return []
        params = {"ids": [s[0] for s in starts], "attempts": [s[1] for s in starts]}
        params["started"] = [s[2] for s in starts]
        async with self.engine.connect() as conn:
            return shaped(EventRow, await conn.execute(_START, params))

    @_db_errors
    async def takeover(self, task_id: uuid.UUID, attempt: int, worker: str) -> LightRow:
        """running (attempt n, its worker gone) → running (attempt n+1, this worker)."""
        why = "its stream entry was idle past the visibility timeout; another worker took it"
        return await self._transition(
            task_id,
            action="take over",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "attempt": tasks.c.attempt + 1,
                "claimed_at": func.now(),
                "started_at": None,
                "worker": worker,
                "meta_data": _ended_unfinished(tasks.c.meta_data, "taken_over", why),
            },
        )

    @_db_errors
    async def complete_many(
        self, results: Sequence[tuple[uuid.UUID, int, JsonObject, JsonObject]]
    ) -> list[EndedRow]:
        """running → completed for each (task_id, attempt, result, meta) still on that attempt.

        One statement for the whole batch (UPDATE … FROM VALUES); rows whose attempt moved on
        are simply not in the returned list.
        """
        if not results:
            return []
        payload = [
            {"id": str(t), "attempt": a, "result": r, "meta": m, "started": _carried(m)}
            for t, a, r, m in results
        ]
        # A fast task's completion may be written before its start (task_times): the row
        # keeps the start it has, else takes the one its attempt's end carries.
        stmt = text(
            """
            UPDATE tasks SET status = :to_status, result = v.result, error = NULL,
                   meta_data = tasks.meta_data || v.meta, finished_at = now(),
                   started_at = COALESCE(tasks.started_at, v.started), updated_at = now()
            FROM jsonb_to_recordset(CAST(:rows AS jsonb))
                 AS v(id uuid, attempt int, result jsonb, meta jsonb, started timestamptz)
            WHERE tasks.task_id = v.id AND tasks.attempt = v.attempt
              AND tasks.status = :from_status
            RETURNING tasks.task_id, tasks.task_type, tasks.status, tasks.owner,
                      tasks.attempt, tasks.batch_id, tasks.started_at
            """
        )
        async with self.engine.connect() as conn:
            res = await conn.execute(
                stmt,
                {
                    "rows": fastjson.dumps(payload),
                    "to_status": S.COMPLETED.value,
                    "from_status": S.RUNNING.value,
                },
            )
            return shaped(EndedRow, res)

    @_db_errors
    async def complete(
        self, task_id: uuid.UUID, attempt: int, result: JsonObject, meta: JsonObject
    ) -> LightRow:
        return await self._transition(
            task_id,
            action="complete",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "status": S.COMPLETED.value,
                "result": result,
                "error": None,
                "meta_data": tasks.c.meta_data.op("||")(meta),
                "started_at": _start_at_end(meta),
                "finished_at": func.now(),
            },
        )

    @_db_errors
    async def fail(
        self, task_id: uuid.UUID, attempt: int, error: str, meta: JsonObject
    ) -> LightRow:
        return await self._transition(
            task_id,
            action="fail",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "status": S.FAILED.value,
                "error": error,
                "meta_data": tasks.c.meta_data.op("||")(meta),
                "started_at": _start_at_end(meta),
                "finished_at": func.now(),
            },
        )

    @_db_errors
    async def retry_later(
        self, task_id: uuid.UUID, attempt: int, error: str, delay_s: float, meta: JsonMap
    ) -> LightRow:
        """running → queued with retry_count+1 and scheduled_for = now + delay."""
        return await self._transition(
            task_id,
            action="retry",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "status": S.QUEUED.value,
                "error": error,
                "retry_count": tasks.c.retry_count + 1,
                "scheduled_for": func.now() + timedelta(seconds=delay_s),
                "queued_at": func.now() + timedelta(seconds=delay_s),
                "started_at": None,
                "meta_data": tasks.c.meta_data.op("||")(meta),
            },
        )

    @_db_errors
    async def release(
        self, task_id: uuid.UUID, attempt: int, meta: JsonMap | None = None, *, why: str
    ) -> LightRow:
        """running → queued, same retry_count: the worker gave it back unfinished (or
        stopped heartbeating); ``why`` goes into the attempt's history entry."""
        merged = tasks.c.meta_data.op("||")(meta or {})
        return await self._transition(
            task_id,
            action="release",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "status": S.QUEUED.value,
                "worker": None,
                "scheduled_for": None,
                "started_at": None,
                "meta_data": _ended_unfinished(merged, "released", why),
            },
        )

    @_db_errors
    async def cancel(self, task_id: uuid.UUID, owner: str | None) -> LightRow:
        return await self._transition(
            task_id,
            action="cancel",
            allowed=[S.PENDING, S.QUEUED, S.RUNNING],
            owner=owner,
            values={"status": S.CANCELLED.value, "finished_at": func.now()},
        )

    @_db_errors
    async def requeue(
        self, task_id: uuid.UUID, owner: str | None, conn: AsyncConnection | None = None
    ) -> LightRow:
        """A user's retry: failed | cancelled → queued, fresh retry budget; arrays an
        earlier attempt stored go (the result that named them is cleared). ``conn``: the
        UPDATE runs in that connection's transaction, and the caller drops the arrays
        once it is committed."""
        row = await self._transition(
            task_id,
            conn=conn,
            action="retry",
            allowed=[s for s in S if s in RETRYABLE],
            owner=owner,
            values={
                "status": S.QUEUED.value,
                "retry_count": 0,
                "error": None,
                "result": None,
                "scheduled_for": None,
                "queued_at": func.now(),
                "claimed_at": None,
                "started_at": None,
                "finished_at": None,
                "worker": None,
            },
        )
        if conn is None:
            await self.drop_arrays(task_id)
        return row

    @_db_errors
    async def merge_meta(self, task_id: uuid.UUID, attempt: int, meta: JsonMap) -> LightRow:
        """Merge keys into a running task's meta_data (e.g. the provider's job id)."""
        return await self._transition(
            task_id,
            action="annotate",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={"meta_data": tasks.c.meta_data.op("||")(meta)},
        )

    @_db_errors
    async def unqueue(self, task_ids: Sequence[uuid.UUID]) -> None:
        """queued → pending: the XADD that should have followed the commit failed."""
        stmt = (
            update(tasks)
            .where(tasks.c.task_id.in_(task_ids), tasks.c.status == S.QUEUED)
            .values(status=S.PENDING.value, updated_at=func.now())
        )
        async with self.engine.connect() as conn:
            await conn.execute(stmt)
