"""TaskStore: every SQL statement qtaskdist runs.

This module holds creation and reads; the guarded state transitions (each one
``UPDATE … WHERE status IN (…) [AND attempt = :n] RETURNING …``) are in
:mod:`qtaskdist_jupyter.core.store.transitions`, a mixin TaskStore inherits, so callers see one
class.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Text, cast, delete, func, insert, literal, or_, select, text, tuple_, update
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qtaskdist_jupyter.core.errors import ConfigError, InvalidInput, TaskNotFound
from qtaskdist_jupyter.core.models import TASKS
from qtaskdist_jupyter.core.schemas import USER_META_KEY
from qtaskdist_jupyter.core.status import FINISHED, TaskStatus
from qtaskdist_jupyter.core.store.admission import Admission
from qtaskdist_jupyter.core.store.engine import (
    NewRow,
    NewTask,
    decode_cursor,
    encode_cursor,
    make_engine,
    shaped,
    shaped_one,
)
from qtaskdist_jupyter.core.store.engine import db_errors as _db_errors
from qtaskdist_jupyter.core.store.housekeeping import Housekeeping
from qtaskdist_jupyter.core.store.results import ResultArrays
from qtaskdist_jupyter.core.store.shapes import (
    DeletedRow,
    EventRow,
    LightRow,
    PageRow,
    RunningRow,
    TaskRecord,
)
from qtaskdist_jupyter.core.store.statements import LIGHT
from qtaskdist_jupyter.core.store.transitions import Transitions

tasks = TASKS
S = TaskStatus
_ROW = tuple(tasks.c)
# What insert_many reads back: what the events and stream messages need.
_INSERTED = (
    tasks.c.task_id,
    tasks.c.task_type,
    tasks.c.status,
    tasks.c.owner,
    tasks.c.attempt,
    tasks.c.batch_id,
)

# Below this many rows a plain INSERT beats setting up a COPY.
_COPY_MIN = 64


class TaskStore(Transitions, ResultArrays, Admission, Housekeeping):
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
    ) -> list[EventRow]:
        """Insert all rows with ``status``, all or none; return their event columns (with
        ``full``, every column as stored, TaskRecord: small batches only).

        Each path is one statement, so atomic under autocommit: a multi-row
        ``INSERT … RETURNING`` (SQLAlchemy's insertmanyvalues, one statement up to 1,000
        rows) for small batches, ``COPY`` (about 3x the rows/s) for large ones, whose light
        rows are built here because every value the caller needs is known before the write.
        """
        async with self.engine.connect() as conn:
            return await self._insert_on(conn, [n.row() for n in new], status, full)

    async def _insert_on(
        self, conn: AsyncConnection, values: list[NewRow], status: str, full: bool
    ) -> list[EventRow]:
        """insert_many on ``conn`` (inside its transaction, if it has one)."""
        if len(values) < _COPY_MIN:
            stmt = insert(tasks).returning(
                *(_ROW if full else _INSERTED), sort_by_parameter_order=True
            )
            res = await conn.execute(stmt, [{**v, "status": status} for v in values])
            if full:
                return list(shaped(TaskRecord, res))
            return shaped(EventRow, res)
        if full:
            raise ValueError(f"full rows are read back for fewer than {_COPY_MIN} tasks")
        await self._copy_in(conn, values, status)
        return [
            EventRow(
                task_id=v["task_id"],
                task_type=v["task_type"],
                status=status,
                owner=v["owner"],
                attempt=0,
                batch_id=v["batch_id"],
            )
            for v in values
        ]

    async def _copy_in(self, conn: AsyncConnection, values: list[NewRow], status: str) -> None:
        cols = (
            "task_id",
            "task_type",
            "status",
            "payload",
            "owner",
            "name",
            "tags",
            "max_retries",
            "batch_id",
            "meta_data",
        )
        dumps = json.JSONEncoder(separators=(",", ":")).encode
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
                    await copy.write_row(
                        (
                            v["task_id"],
                            v["task_type"],
                            status,
                            text_p,
                            v["owner"],
                            v["name"],
                            v["tags"],
                            v["max_retries"],
                            v["batch_id"],
                            dumps(v["meta_data"]),
                        )
                    )

    @_db_errors
    async def get(self, task_id: uuid.UUID, owner: str | None = None) -> TaskRecord:
        stmt = select(*_ROW).where(tasks.c.task_id == task_id)
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        return await self._one(stmt, task_id)

    async def _one(self, stmt: Any, task_id: uuid.UUID) -> TaskRecord:
        """The statement's one row (every column); TaskNotFound when there is none (or not
        the owner's)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise TaskNotFound(f"task {task_id} not found", task_id=str(task_id))
        return shaped_one(TaskRecord, row)

    @_db_errors
    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> list[TaskRecord]:
        async with self.engine.connect() as conn:
            res = await conn.execute(select(*_ROW).where(tasks.c.task_id.in_(task_ids)))
            return shaped(TaskRecord, res)

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
        columns: Sequence[str] | None = None,
    ) -> tuple[list[PageRow], str | None]:
        """Newest first; keyset pagination on (created_at, task_id). ``columns`` (names
        of the tasks table) limits what is read: a list leaves payload and result out."""
        cols = _ROW
        if columns is not None:
            wanted = {"created_at", "task_id", *columns}
            cols = tuple(c for c in _ROW if c.name in wanted)
        stmt = self._page(select(*cols), owner, status, task_type, batch_id, name, cursor)
        async with self.engine.connect() as conn:
            rows = shaped(PageRow, await conn.execute(stmt.limit(limit + 1)))
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["task_id"])
        return rows, nxt

    @_db_errors
    async def page_bytes(
        self,
        columns: Sequence[str],
        *,
        owner: str | None,
        status: Iterable[str] | None = None,
        task_type: str | None = None,
        batch_id: uuid.UUID | None = None,
        name: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> list[int]:
        """For each row of the page :meth:`list` would answer, the bytes of its ``columns``
        as text (a column twice: counted twice): measured in PostgreSQL, nothing of them is
        read here."""
        sizes = (func.coalesce(func.octet_length(cast(tasks.c[c], Text)), 0) for c in columns)
        size = sum(sizes, literal(0))
        stmt = self._page(select(size), owner, status, task_type, batch_id, name, cursor)
        async with self.engine.connect() as conn:
            return [int(n) for (n,) in await conn.execute(stmt.limit(limit))]

    @staticmethod
    def _page(
        stmt: Any,
        owner: str | None,
        status: Iterable[str] | None,
        task_type: str | None,
        batch_id: uuid.UUID | None,
        name: str | None,
        cursor: str | None,
    ) -> Any:
        """``stmt`` filtered and ordered as a page of GET tasks (newest first)."""
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
        return stmt.order_by(tasks.c.created_at.desc(), tasks.c.task_id.desc())

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
    async def counts_by_type(self) -> dict[tuple[str, str], int]:
        """(task_type, status) -> rows, every owner: the metrics endpoint's one query."""
        stmt = select(tasks.c.task_type, tasks.c.status, func.count()).group_by(
            tasks.c.task_type, tasks.c.status
        )
        async with self.engine.connect() as conn:
            return {(t, s): int(n) for t, s, n in await conn.execute(stmt)}

    @_db_errors
    async def update(
        self, task_id: uuid.UUID, owner: str | None, fields: Mapping[str, object]
    ) -> TaskRecord:
        """Plain fields only (name, tags, max_retries, labels); status moves elsewhere.
        ``labels`` replaces meta_data's user part; the system's keys are never written here."""
        allowed = {"name", "tags", "max_retries", "labels"}
        bad = set(fields) - allowed
        if bad:
            raise InvalidInput(f"cannot update {sorted(bad)}", field=sorted(bad)[0])
        fields = dict(fields)
        if "labels" in fields:
            user = {USER_META_KEY: fields.pop("labels")}
            fields["meta_data"] = tasks.c.meta_data.op("||")(user)
        cond = [tasks.c.task_id == task_id]
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        stmt = update(tasks).where(*cond).values(**fields, updated_at=func.now()).returning(*_ROW)
        return await self._one(stmt, task_id)

    @_db_errors
    async def delete(self, task_id: uuid.UUID, owner: str | None) -> DeletedRow:
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
            return shaped_one(DeletedRow, row)

    @_db_errors
    async def active_of(self, owner: str) -> int:
        """pending + queued + running rows of one owner (the per-user quota)."""
        async with self.engine.connect() as conn:
            return await self._active_on(conn, owner)

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
    async def due_queued(self, *, limit: int = 1000) -> list[LightRow]:
        """queued rows whose time has come (scheduled_for unset or past)."""
        stmt = (
            select(*LIGHT)
            .where(
                tasks.c.status == S.QUEUED,
                or_(tasks.c.scheduled_for.is_(None), tasks.c.scheduled_for <= func.now()),
            )
            .order_by(tasks.c.created_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return shaped(LightRow, await conn.execute(stmt))

    @_db_errors
    async def running_rows(self, *, limit: int = 1000) -> list[RunningRow]:
        stmt = select(*LIGHT, tasks.c.worker).where(tasks.c.status == S.RUNNING).limit(limit)
        async with self.engine.connect() as conn:
            return shaped(RunningRow, await conn.execute(stmt))

    @_db_errors
    async def status_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, int]]:
        stmt = select(tasks.c.task_id, tasks.c.status, tasks.c.attempt).where(
            tasks.c.task_id.in_(task_ids)
        )
        async with self.engine.connect() as conn:
            return {r.task_id: (r.status, r.attempt) for r in await conn.execute(stmt)}


__all__ = ["NewTask", "TaskStore", "make_engine"]
