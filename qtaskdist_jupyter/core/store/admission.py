"""Admission under a per-owner lock: the owner's active count and the write that changes it
in one transaction, so concurrent requests of one owner are counted one after another.

The lock is a transaction-level advisory lock keyed on the owner
(``pg_advisory_xact_lock(class, hashtext(owner))``): it is released by the COMMIT or
ROLLBACK that ends the transaction, also when the connection drops, and two owners whose
names hash alike only wait for each other. Every server process (and every host) sharing
the database shares the lock.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qtaskdist_jupyter.core.models import TASKS
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.core.store.engine import NewTask
from qtaskdist_jupyter.core.store.engine import db_errors as _db_errors
from qtaskdist_jupyter.core.store.shapes import EventRow, LightRow

tasks = TASKS
S = TaskStatus
T = TypeVar("T")
# The advisory lock class of owner admission ("qtd1"); the second key is the owner's hash.
ADMISSION_LOCK_CLASS = 0x71746431
ACTIVE = (S.PENDING.value, S.QUEUED.value, S.RUNNING.value)
_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_COUNTS_SQL = (
    "SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM tasks WHERE owner = %s"
)


class Admission:
    """Mixed into :class:`~.store.TaskStore`: writes that a per-owner count decides."""

    engine: AsyncEngine
    _insert_on: Callable[..., Awaitable[list[EventRow]]]  # TaskStore._insert_on
    requeue: Callable[..., Awaitable[LightRow]]  # Transitions.requeue
    drop_arrays: Callable[[uuid.UUID], Awaitable[None]]

    async def _active_on(self, conn: AsyncConnection, owner: str) -> int:
        stmt = select(func.count()).where(tasks.c.owner == owner, tasks.c.status.in_(ACTIVE))
        return int((await conn.execute(stmt)).scalar_one())

    @contextlib.asynccontextmanager
    async def _owner_txn(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a READ COMMITTED transaction; :meth:`_locked_counts` takes the
        owner's lock in it."""
        async with self.engine.connect() as conn:
            # The engine is autocommit; this connection needs a real transaction (its
            # isolation level is reset when it goes back to the pool).
            conn = await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                yield conn

    async def _locked_counts(self, conn: AsyncConnection, owner: str) -> tuple[int, int]:
        """Take ``owner``'s lock, then count the owner's active and stored rows: BEGIN,
        the lock and the count go out in one round trip (psycopg's pipeline mode). The
        server still runs them one after another, and under READ COMMITTED the count's
        snapshot is taken when it starts, after the lock is held, so it sees every row a
        previous holder committed."""
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.pipeline(), pg.cursor() as lock, pg.cursor() as count:
            await lock.execute(_LOCK_SQL, (ADMISSION_LOCK_CLASS, owner))
            await count.execute(_COUNTS_SQL, (list(ACTIVE), owner))
            row = await count.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    @_db_errors
    async def insert_admitted(
        self,
        owner: str,
        new: Sequence[NewTask],
        decide: Callable[[int, int], T],
        *,
        status: str = S.PENDING.value,
        full: bool = False,
    ) -> tuple[list[EventRow], T]:
        """Insert ``new`` (all ``owner``'s) if ``decide(active, stored)`` allows it:
        ``decide`` gets the owner's active and stored counts under the lock and raises to
        refuse (nothing is written); its answer is returned with the rows (see
        TaskStore.insert_many)."""
        values = [n.row() for n in new]
        async with self._owner_txn() as conn:
            verdict = decide(*await self._locked_counts(conn, owner))
            rows = await self._insert_on(conn, values, status, full)
        return rows, verdict

    @_db_errors
    async def requeue_admitted(
        self, task_id: uuid.UUID, owner: str, decide: Callable[[int], T]
    ) -> tuple[LightRow, T]:
        """TaskStore.requeue if ``decide(active)`` allows it, under ``owner``'s lock."""
        async with self._owner_txn() as conn:
            verdict = decide((await self._locked_counts(conn, owner))[0])
            row = await self.requeue(task_id, owner, conn=conn)
        await self.drop_arrays(task_id)  # after the commit, as TaskStore.requeue does
        return row, verdict
