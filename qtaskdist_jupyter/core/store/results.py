"""TaskStore's statements on stored result arrays (``task_result_chunks``): a mixin it
inherits, so all SQL stays in the store. Why a chunk table and not large objects:
migrations/versions/0002_results.py and docs/message-format.md."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Uuid,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from qtaskdist_jupyter.core.arrays import CHUNK_BYTES, NpyStream, find_ref
from qtaskdist_jupyter.core.errors import ArrayNotFound
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject, JsonValue
from qtaskdist_jupyter.core.models import Base
from qtaskdist_jupyter.core.store.engine import db_errors as _db_errors
from qtaskdist_jupyter.core.store.shapes import TaskRecord

chunks = Table(
    "task_result_chunks",
    Base.metadata,
    Column("task_id", Uuid, ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


class ResultArrays:
    """Stored arrays of a task's result, written by the worker, read by the server; part
    of :class:`~.store.TaskStore`, whose state and row reads it declares here."""

    engine: AsyncEngine
    get: Callable[[uuid.UUID, str | None], Awaitable[TaskRecord]]  # TaskStore.get

    @_db_errors
    async def put_array(self, task_id: uuid.UUID, attempt: int, name: str, fp: IO[bytes]) -> int:
        """Copy ``fp`` (compressed bytes) into chunks of CHUNK_BYTES; returns how many.

        Chunks of earlier attempts of the task go first (a retried task keeps only what
        its last run wrote), and so do this name's on this attempt (a settle retried after
        a connection loss writes them again). The COPY is one statement: all or none.
        """
        stale = delete(chunks).where(
            chunks.c.task_id == task_id,
            or_(chunks.c.attempt != attempt, chunks.c.name == name),
        )
        async with self.engine.connect() as conn:
            await conn.execute(stale)
            raw = await conn.get_raw_connection()
            pg = raw.driver_connection
            assert pg is not None
            n = 0
            async with pg.cursor() as cur:
                sql = "COPY task_result_chunks (task_id, attempt, name, seq, data) FROM STDIN"
                async with cur.copy(f"{sql} (FORMAT BINARY)") as copy:
                    copy.set_types(["uuid", "int4", "varchar", "int4", "bytea"])
                    while data := fp.read(CHUNK_BYTES):
                        await copy.write_row((task_id, attempt, name, n, data))
                        n += 1
            return n

    async def drop_arrays(self, task_id: uuid.UUID) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(delete(chunks).where(chunks.c.task_id == task_id))

    @_db_errors
    async def array_chunk(self, task_id: uuid.UUID, attempt: int, name: str, seq: int) -> bytes:
        """One stored chunk (b"" past the last): a reader holds one chunk at a time."""
        stmt = select(chunks.c.data).where(
            and_(
                chunks.c.task_id == task_id,
                chunks.c.attempt == attempt,
                chunks.c.name == name,
                chunks.c.seq == seq,
            )
        )
        async with self.engine.connect() as conn:
            data = (await conn.execute(stmt)).scalar_one_or_none()
        return bytes(data) if data is not None else b""

    async def array_ref(self, task_id: uuid.UUID, owner: str | None, name: str) -> JsonObject:
        """The reference to a stored array of the task's result (owner's tasks only)."""
        row = await self.get(task_id, owner)
        ref = find_ref(row["result"], name)
        if ref is None:
            raise ArrayNotFound(
                f"task {task_id} stores no result array {name!r}", task_id=str(task_id)
            )
        return ref

    async def iter_array(
        self, task_id: uuid.UUID, name: str, ref: JsonMap, *, npy: bool
    ) -> AsyncIterator[bytes]:
        """The stored frame chunk by chunk; with ``npy``, its ``.npy`` bytes in pieces of
        at most CHUNK_BYTES, the decompressor kept two stored chunks ahead (bounded
        memory even for a frame that expands a thousandfold)."""
        attempt, n = _count(ref["attempt"]), _count(ref["chunks"])
        if not npy:
            for seq in range(n):
                yield await self.array_chunk(task_id, attempt, name, seq)
            return
        stream, seq = NpyStream(), 0
        while True:
            while seq < n and stream.buffered < 2 * CHUNK_BYTES:
                stream.feed(await self.array_chunk(task_id, attempt, name, seq))
                seq += 1
            piece = stream.take(CHUNK_BYTES)
            if not piece:
                return
            yield piece

    @_db_errors
    async def array_bytes(self, task_id: uuid.UUID | None = None) -> int:
        """Stored bytes of one task's arrays (or of all: benchmarks, tests)."""
        stmt = select(func.coalesce(func.sum(func.octet_length(chunks.c.data)), 0))
        if task_id is not None:
            stmt = stmt.where(chunks.c.task_id == task_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())


def _count(value: JsonValue) -> int:
    """A number of a reference (its attempt, its chunks), as int() reads it."""
    if not isinstance(value, int | float | str):
        raise TypeError(f"an array reference holds {type(value).__name__}, not a number")
    return int(value)


__all__ = ["ResultArrays", "chunks"]
