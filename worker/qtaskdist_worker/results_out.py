"""Settling large results: move the arrays a job process spooled into PostgreSQL, and
complete the rows so that a result the database refuses fails its task at once.

Called from :class:`~.settle.Finisher`. The job process wrote each large array as a
compressed .npy file in the pool's spool directory (qtaskdist_jupyter.core.arrays.spill) and
named it in its reply; the file is read here in chunks of arrays.CHUNK_BYTES, so this
process never holds an array.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core import arrays
from qtaskdist_jupyter.core.errors import DataRefused
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from qtaskdist_jupyter.core.queue.ports import Done

from .units import InFlight

if TYPE_CHECKING:
    from .jobs.protocol import Outcome

log = logging.getLogger("qtaskdist_worker")
# The only file names spill() creates: a reply naming anything else is not followed.
_SPOOLED = re.compile(r"[0-9a-f]{32}\.npy\.zst")
Retrying = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


def _spooled_path(spool_dir: str | None, name: object) -> str:
    if not spool_dir or not isinstance(name, str) or not _SPOOLED.fullmatch(name):
        raise ValueError(f"the job process named no spooled file it could have written: {name!r}")
    return os.path.join(spool_dir, name)


async def store_arrays(
    queue: TaskQueue,
    spool_dir: str | None,
    retrying: Retrying,
    items: list[InFlight],
    replies: dict[str, Outcome],
) -> None:
    """Replace each spooled array in the replies with its stored reference. A task whose
    array the database refuses (or whose file is missing) gets a failed reply instead.
    Every spooled file of these replies is removed, whatever happened."""
    files = [
        ref.get("file")
        for out in replies.values()
        if isinstance(out, dict)
        for _n, ref in arrays.refs(out.get("result"))
    ]
    try:
        for item in items:
            out = replies.get(item.key)
            if not out or not out.get("ok"):
                continue
            name = "array"
            try:
                for name, ref in list(arrays.refs(out.get("result"))):
                    await _store_one(queue, spool_dir, retrying, item, name, ref)
            except (DataRefused, OSError, ValueError) as exc:
                msg = getattr(exc, "message", None) or str(exc)
                replies[item.key] = {
                    "ok": False,
                    "error": f"the result's {name} was not stored: {msg}",
                    "retryable": False,
                }
    finally:
        for f in files:
            with contextlib.suppress(OSError, ValueError):
                os.unlink(_spooled_path(spool_dir, f))


async def _store_one(
    queue: TaskQueue,
    spool_dir: str | None,
    retrying: Retrying,
    item: InFlight,
    name: str,
    ref: JsonObject,
) -> None:
    path = _spooled_path(spool_dir, ref.get("file"))
    with open(path, "rb") as fp:

        async def put() -> int:
            fp.seek(0)  # a retry after a lost connection starts over
            return await queue.store_array(item.task_id, item.attempt, name, fp)

        ref["chunks"] = await retrying(put, "store array")
    del ref["file"]
    ref["$array"] = name
    ref["attempt"] = item.attempt


async def complete_all(
    queue: TaskQueue, retrying: Retrying, done: list[Done]
) -> tuple[list[TaskRow], dict[uuid.UUID, str]]:
    """Complete the rows in one statement; if PostgreSQL refuses the batch for its data,
    one by one, and return the refused tasks' one-line errors (they fail, not retry)."""
    try:
        return await retrying(lambda: queue.complete_many(done), "complete"), {}
    except DataRefused as exc:
        if len(done) == 1:
            return [], {done[0][0]: _refused_line(exc)}
    rows: list[TaskRow] = []
    refused: dict[uuid.UUID, str] = {}
    for one in done:
        try:
            rows += await retrying(lambda one=one: queue.complete_many([one]), "complete")
        except DataRefused as exc:
            refused[one[0]] = _refused_line(exc)
    return rows, refused


def _refused_line(exc: DataRefused) -> str:
    line = f"the result was not stored: {exc.message}"
    log.warning(line)
    return line
