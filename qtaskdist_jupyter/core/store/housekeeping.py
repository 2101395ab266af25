"""TaskStore's statements on stored volume: rows per owner (the storage quota), the
deletion of old finished tasks (retention), and the ids of an owner that start with some
digits (``GET tasks/resolve``). A mixin TaskStore inherits, as the others.

Result chunks go with their task (``task_result_chunks.task_id`` is ``ON DELETE
CASCADE``), in the same statement.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from qtaskdist_jupyter.core.models import TASKS
from qtaskdist_jupyter.core.status import FINISHED
from qtaskdist_jupyter.core.store.engine import db_errors as _db_errors

tasks = TASKS


class Housekeeping:
    engine: AsyncEngine

    @_db_errors
    async def ids_between(
        self, owner: str, lo: uuid.UUID, hi: uuid.UUID, *, column: str, limit: int
    ) -> list[uuid.UUID]:
        """``owner``'s distinct task ids (``column="task_id"``) or batch ids
        (``"batch_id"``) in [lo, hi], in order, at most ``limit``: a range scan of the
        primary key or of the batch index (core/short_ids.id_range gives the range)."""
        col = tasks.c.task_id if column == "task_id" else tasks.c.batch_id
        stmt = (
            select(col)
            .where(tasks.c.owner == owner, col.between(lo, hi))
            .group_by(col)
            .order_by(col)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [i for (i,) in await conn.execute(stmt)]

    @_db_errors
    async def stored_of(self, owner: str) -> int:
        """Rows of one owner, every status (the storage quota)."""
        stmt = select(func.count()).where(tasks.c.owner == owner)
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    @_db_errors
    async def delete_finished_before(self, age_s: float, limit: int) -> int:
        """Delete at most ``limit`` finished tasks (completed, failed, cancelled) whose
        last change is more than ``age_s`` seconds old, with their stored arrays; returns
        how many. A task's age counts from ``finished_at`` (``updated_at`` if it never
        ran): a retried task is young again."""
        ended = func.coalesce(tasks.c.finished_at, tasks.c.updated_at)
        old = (
            select(tasks.c.task_id)
            .where(
                tasks.c.status.in_([s.value for s in FINISHED]),
                ended < func.now() - timedelta(seconds=age_s),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = delete(tasks).where(
            tasks.c.task_id.in_(old.scalar_subquery()),
            tasks.c.status.in_([s.value for s in FINISHED]),
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).rowcount or 0)

    async def gc(self, age_s: float, *, batch: int, max_batches: int | None = None) -> int:
        """Delete finished tasks older than ``age_s`` in batches of ``batch`` rows (one
        statement each) until none is left or ``max_batches`` ran; returns how many."""
        deleted = batches = 0
        while max_batches is None or batches < max_batches:
            n = await self.delete_finished_before(age_s, batch)
            deleted += n
            batches += 1
            if n < batch:
                break
        return deleted


__all__ = ["Housekeeping"]
