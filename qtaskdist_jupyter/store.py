"""TaskStore: every SQL statement qtaskdist runs.

Each state transition is one guarded ``UPDATE … WHERE status IN (…) [AND attempt = :n]
RETURNING …``. When no row matches, :class:`TransitionError` says what the row holds
instead, so a stale worker or a double click changes nothing and learns why.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    Uuid,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db import NewTask, decode_cursor, encode_cursor, make_engine
from .db import db_errors as _db_errors
from .errors import ConfigError, InvalidInput, TaskNotFound, TransitionError
from .models import FINISHED, Task, TaskStatus

tasks = Task.__table__
S = TaskStatus
_ROW = tuple(tasks.c)
_LIGHT = (
    tasks.c.task_id,
    tasks.c.task_type,
    tasks.c.status,
    tasks.c.owner,
    tasks.c.attempt,
    tasks.c.batch_id,
    tasks.c.payload,
    tasks.c.retry_count,
    tasks.c.max_retries,
    tasks.c.created_at,
    tasks.c.started_at,
    tasks.c.meta_data,
)


# What insert_many reads back: what the events and stream messages need.
_INSERTED = (
    tasks.c.task_id, tasks.c.task_type, tasks.c.status, tasks.c.owner, tasks.c.attempt,
    tasks.c.batch_id,
)  # fmt: skip

# queued → running for (task_id, attempt) pairs passed as two arrays: the SQL text is the
# same for any batch size, so it is compiled once and PostgreSQL can prepare it (an IN
# list of pairs is new text for every size).
_CLAIMS = (
    func.unnest(bindparam("ids", type_=ARRAY(Uuid)), bindparam("attempts", type_=ARRAY(Integer)))
    .table_valued("id", "attempt")
    .render_derived(name="claims")
)
_CLAIM = (
    update(tasks)
    .where(
        tasks.c.task_id == _CLAIMS.c.id,
        tasks.c.attempt == _CLAIMS.c.attempt,
        tasks.c.status == S.QUEUED.value,
        or_(tasks.c.scheduled_for.is_(None), tasks.c.scheduled_for <= func.now()),
    )
    .values(
        status=S.RUNNING.value,
        attempt=tasks.c.attempt + 1,
        started_at=func.now(),
        worker=bindparam("worker"),
        updated_at=func.now(),
    )
    .returning(*_LIGHT)
)

# Below this many rows a plain INSERT beats setting up a COPY.
_COPY_MIN = 64


class TaskStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, database_url: str, *, pool_size: int = 5) -> TaskStore:
        return cls(make_engine(database_url, pool_size=pool_size))

    async def close(self) -> None:
        await self.engine.dispose()

    @_db_errors
    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # ---- create / read -------------------------------------------------------------
    @_db_errors
    async def insert_many(
        self, new: Sequence[NewTask], *, status: str = S.PENDING.value, full: bool = False
    ) -> list[dict[str, Any]]:
        """Insert all rows with ``status``, all or none; return their light rows (with
        ``full``, every column as stored: small batches only).

        Each path is one statement, so atomic under autocommit: a multi-row
        ``INSERT … RETURNING`` (SQLAlchemy's insertmanyvalues, one statement up to 1,000
        rows) for small batches, ``COPY`` (about 3x the rows/s) for large ones, whose light
        rows are built here because every value the caller needs is known before the write.
        """
        values = [n.row() for n in new]
        if len(values) < _COPY_MIN:
            cols = _ROW if full else _INSERTED
            stmt = insert(tasks).returning(*cols, sort_by_parameter_order=True)
            async with self.engine.connect() as conn:
                res = await conn.execute(stmt, [{**v, "status": status} for v in values])
                return [dict(r._mapping) for r in res]
        if full:
            raise ValueError(f"full rows are read back for fewer than {_COPY_MIN} tasks")
        await self._copy_in(values, status)
        return [
            {"task_id": v["task_id"], "task_type": v["task_type"], "status": status,
             "owner": v["owner"], "attempt": 0, "batch_id": v["batch_id"]}
            for v in values
        ]  # fmt: skip

    async def _copy_in(self, values: list[dict[str, Any]], status: str) -> None:
        cols = ("task_id", "task_type", "status", "payload", "owner", "name", "tags",
                "max_retries", "batch_id", "meta_data")  # fmt: skip
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            pg = raw.driver_connection
            assert pg is not None
            async with pg.cursor() as cur:
                async with cur.copy(f"COPY tasks ({', '.join(cols)}) FROM STDIN") as copy:
                    # Equal payloads (a sweep of one circuit) are dumped once.
                    memo: dict[int, str] = {}
                    for v in values:
                        p = v["payload"]
                        text_p = memo.get(id(p))
                        if text_p is None:
                            text_p = memo[id(p)] = dumps(p)
                        await copy.write_row((
                            v["task_id"], v["task_type"], status, text_p, v["owner"],
                            v["name"], v["tags"], v["max_retries"], v["batch_id"],
                            dumps(v["meta_data"]),
                        ))  # fmt: skip

    @_db_errors
    async def get(self, task_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        stmt = select(*_ROW).where(tasks.c.task_id == task_id)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=str(task_id))
        return dict(row._mapping)

    @_db_errors
    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            res = await conn.execute(select(*_ROW).where(tasks.c.task_id.in_(task_ids)))
            return [dict(r._mapping) for r in res]

    @_db_errors
    async def list(
        self,
        *,
        owner: str | None,
        status: Iterable[str] | None = None,
        task_type: str | None = None,
        batch_id: uuid.UUID | None = None,
        name: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; keyset pagination on (created_at, task_id)."""
        stmt = select(*_ROW)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        if status:
            stmt = stmt.where(tasks.c.status.in_(list(status)))
        if task_type:
            stmt = stmt.where(tasks.c.task_type == task_type)
        if batch_id:
            stmt = stmt.where(tasks.c.batch_id == batch_id)
        if name:
            stmt = stmt.where(tasks.c.name == name)
        if cursor:
            ts, tid = decode_cursor(cursor)
            stmt = stmt.where(tuple_(tasks.c.created_at, tasks.c.task_id) < tuple_(ts, tid))
        stmt = stmt.order_by(tasks.c.created_at.desc(), tasks.c.task_id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(stmt)]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["task_id"])
        return rows, nxt

    @_db_errors
    async def counts(
        self, *, owner: str | None, batch_id: uuid.UUID | None = None
    ) -> dict[str, int]:
        stmt = select(tasks.c.status, func.count()).group_by(tasks.c.status)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        if batch_id is not None:
            stmt = stmt.where(tasks.c.batch_id == batch_id)
        async with self.engine.connect() as conn:
            got = {s: n for s, n in await conn.execute(stmt)}
        return {s.value: got.get(s.value, 0) for s in TaskStatus}

    @_db_errors
    async def update(
        self, task_id: uuid.UUID, owner: str | None, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Plain fields only (name, tags, max_retries, meta_data); status moves elsewhere."""
        allowed = {"name", "tags", "max_retries", "meta_data"}
        bad = set(fields) - allowed
        if bad:
            raise InvalidInput(f"cannot update {sorted(bad)}", field=sorted(bad)[0])
        cond = [tasks.c.task_id == task_id]
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        stmt = update(tasks).where(*cond).values(**fields, updated_at=func.now()).returning(*_ROW)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=str(task_id))
        return dict(row._mapping)

    @_db_errors
    async def delete(self, task_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        """Delete a finished task; returns what an event about it needs."""
        cond = [tasks.c.task_id == task_id, tasks.c.status.in_([s.value for s in FINISHED])]
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        stmt = (
            delete(tasks)
            .where(*cond)
            .returning(
                tasks.c.task_id,
                tasks.c.task_type,
                tasks.c.owner,
                tasks.c.attempt,
                tasks.c.batch_id,
            )
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                await self._why(conn, task_id, owner, "delete", FINISHED)
            return dict(row._mapping)

    # ---- transitions ---------------------------------------------------------------
    async def _why(
        self,
        conn: AsyncConnection,
        task_id: uuid.UUID,
        owner: str | None,
        action: str,
        allowed: Iterable[str],
        attempt: int | None = None,
    ) -> None:
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
        values: dict[str, Any],
        attempt: int | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
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
            .returning(*_LIGHT, tasks.c.status)
        )

        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                await self._why(conn, task_id, owner, action, allowed, attempt)
            return dict(row._mapping)

    @_db_errors
    async def mark_queued(self, task_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
        """pending → queued for many rows; returns the rows that moved."""
        stmt = (
            update(tasks)
            .where(tasks.c.task_id.in_(task_ids), tasks.c.status == S.PENDING)
            .values(status=S.QUEUED.value, updated_at=func.now())
            .returning(*_LIGHT)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    @_db_errors
    async def claim_many(
        self, claims: Sequence[tuple[uuid.UUID, int]], worker: str
    ) -> list[dict[str, Any]]:
        """queued → running for every (task_id, attempt) that still matches, in one UPDATE.

        Rows whose ``scheduled_for`` lies in the future are not claimed: they were re-queued
        with a backoff and a later message will bring them back.
        """
        if not claims:
            return []
        params = {"ids": [t for t, _a in claims], "attempts": [a for _t, a in claims]}
        params["worker"] = worker
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(_CLAIM, params)]

    @_db_errors
    async def takeover(self, task_id: uuid.UUID, attempt: int, worker: str) -> dict[str, Any]:
        """running (attempt n, its worker gone) → running (attempt n+1, this worker)."""
        return await self._transition(
            task_id,
            action="take over",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "attempt": tasks.c.attempt + 1,
                "started_at": func.now(),
                "worker": worker,
            },
        )

    @_db_errors
    async def complete_many(
        self, results: Sequence[tuple[uuid.UUID, int, dict[str, Any], dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """running → completed for each (task_id, attempt, result, meta) still on that attempt.

        One statement for the whole batch (UPDATE … FROM VALUES); rows whose attempt moved on
        are simply not in the returned list.
        """
        if not results:
            return []
        payload = [{"id": str(t), "attempt": a, "result": r, "meta": m} for t, a, r, m in results]
        stmt = text(
            """
            UPDATE tasks SET status = 'completed', result = v.result, error = NULL,
                   meta_data = tasks.meta_data || v.meta, finished_at = now(),
                   updated_at = now()
            FROM jsonb_to_recordset(CAST(:rows AS jsonb))
                 AS v(id uuid, attempt int, result jsonb, meta jsonb)
            WHERE tasks.task_id = v.id AND tasks.attempt = v.attempt
              AND tasks.status = 'running'
            RETURNING tasks.task_id, tasks.task_type, tasks.status, tasks.owner,
                      tasks.attempt, tasks.batch_id
            """
        )
        async with self.engine.connect() as conn:
            res = await conn.execute(stmt, {"rows": json.dumps(payload, default=str)})
            return [dict(r._mapping) for r in res]

    @_db_errors
    async def complete(
        self, task_id: uuid.UUID, attempt: int, result: dict[str, Any], meta: dict[str, Any]
    ) -> dict[str, Any]:
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
                "finished_at": func.now(),
            },
        )

    @_db_errors
    async def fail(
        self, task_id: uuid.UUID, attempt: int, error: str, meta: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._transition(
            task_id,
            action="fail",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "status": S.FAILED.value,
                "error": error,
                "meta_data": tasks.c.meta_data.op("||")(meta),
                "finished_at": func.now(),
            },
        )

    @_db_errors
    async def retry_later(
        self, task_id: uuid.UUID, attempt: int, error: str, delay_s: float, meta: dict[str, Any]
    ) -> dict[str, Any]:
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
                "meta_data": tasks.c.meta_data.op("||")(meta),
            },
        )

    @_db_errors
    async def release(
        self, task_id: uuid.UUID, attempt: int, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """running → queued, same retry_count: the worker gave it back unfinished."""
        return await self._transition(
            task_id,
            action="release",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={
                "status": S.QUEUED.value,
                "worker": None,
                "scheduled_for": None,
                "meta_data": tasks.c.meta_data.op("||")(meta or {}),
            },
        )

    @_db_errors
    async def cancel(self, task_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        return await self._transition(
            task_id,
            action="cancel",
            allowed=[S.PENDING, S.QUEUED, S.RUNNING],
            owner=owner,
            values={"status": S.CANCELLED.value, "finished_at": func.now()},
        )

    @_db_errors
    async def requeue(self, task_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        """A user's retry: failed | cancelled → queued, fresh retry budget."""
        return await self._transition(
            task_id,
            action="retry",
            allowed=[S.FAILED, S.CANCELLED],
            owner=owner,
            values={
                "status": S.QUEUED.value,
                "retry_count": 0,
                "error": None,
                "result": None,
                "scheduled_for": None,
                "finished_at": None,
                "worker": None,
            },
        )

    @_db_errors
    async def merge_meta(
        self, task_id: uuid.UUID, attempt: int, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge keys into a running task's meta_data (e.g. the provider's job id)."""
        return await self._transition(
            task_id,
            action="annotate",
            allowed=[S.RUNNING],
            attempt=attempt,
            values={"meta_data": tasks.c.meta_data.op("||")(meta)},
        )

    @_db_errors
    async def active_count(self, task_types: Sequence[str]) -> int:
        """queued + running rows of these task types (a burst worker stops at zero)."""
        stmt = select(func.count()).where(
            tasks.c.status.in_([S.QUEUED.value, S.RUNNING.value]),
            tasks.c.task_type.in_(list(task_types)),
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

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

    @_db_errors
    async def check_schema(self) -> None:
        """ConfigError when the migrations have not run on this database."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1 FROM tasks LIMIT 0"))
        except ProgrammingError as exc:
            raise ConfigError(
                "the database has no 'tasks' table; create it first with `qtaskdist db upgrade` "
                "(or start the Jupyter server once)"
            ) from exc

    # ---- reconciler ----------------------------------------------------------------
    @_db_errors
    async def due_queued(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """queued rows whose time has come (scheduled_for unset or past)."""
        stmt = (
            select(*_LIGHT)
            .where(
                tasks.c.status == S.QUEUED,
                or_(tasks.c.scheduled_for.is_(None), tasks.c.scheduled_for <= func.now()),
            )
            .order_by(tasks.c.created_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    @_db_errors
    async def running_rows(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        stmt = select(*_LIGHT, tasks.c.worker).where(tasks.c.status == S.RUNNING).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    @_db_errors
    async def status_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, int]]:
        stmt = select(tasks.c.task_id, tasks.c.status, tasks.c.attempt).where(
            tasks.c.task_id.in_(task_ids)
        )
        async with self.engine.connect() as conn:
            return {r.task_id: (r.status, r.attempt) for r in await conn.execute(stmt)}


__all__ = ["NewTask", "TaskStore", "make_engine", "and_"]
