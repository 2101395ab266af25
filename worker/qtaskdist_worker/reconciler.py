"""The reconciler: repairs what Redis lost and what dead workers left behind.

PostgreSQL is the source of truth. This machine's Redis keeps nothing on disk, so after a
restart (or a FLUSHALL) the streams, groups and delay ZSET are empty while rows still say
``queued``; and a worker killed with SIGKILL leaves rows ``running`` forever. Every worker
runs :func:`reconcile` periodically; a short Redis lock lets one of them do it at a time.
Duplicate messages it may add are harmless: claims are fenced on the row's attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from qtaskdist_jupyter.errors import TaskNotFound, TransitionError
from qtaskdist_jupyter.queue import Broker
from qtaskdist_jupyter.store import TaskStore
from qtaskdist_jupyter.streams import STREAMS, TaskMessage

log = logging.getLogger(__name__)
LOCK_KEY = "qtaskdist:reconcile"


def live_workers(workers: dict[str, dict[str, Any]], stale_after_s: float) -> set[str]:
    now = time.time()
    return {n for n, info in workers.items() if now - float(info.get("ts", 0)) <= stale_after_s}


async def reconcile(
    store: TaskStore,
    broker: Broker,
    task_types: Sequence[str],
    *,
    stale_after_s: float,
    lock_ttl_s: int = 10,
    force: bool = False,
) -> dict[str, int]:
    """One pass. Returns how many rows were re-enqueued and released."""
    if not force and not await broker.redis.set(LOCK_KEY, "1", nx=True, ex=lock_ttl_s):
        return {"requeued": 0, "released": 0}
    streams = [STREAMS[t] for t in task_types]
    await broker.ensure_groups(streams)
    requeued = released = 0

    held: set[str] = set()
    for stream in streams:
        held |= await broker.queued_ids(stream)
    lost = [
        r
        for r in await store.due_queued(limit=5000)
        if r["task_type"] in task_types and r["task_id"].hex not in held
    ]
    if lost:
        await broker.enqueue(
            [TaskMessage(r["task_id"], r["task_type"], r["attempt"]) for r in lost]
        )
        requeued = len(lost)

    alive = live_workers(await broker.workers(), stale_after_s)
    orphans = [
        r
        for r in await store.running_rows(limit=5000)
        if r["task_type"] in task_types and r.get("worker") not in alive
    ]
    moved = []
    for r in orphans:
        try:
            row = await store.release(
                r["task_id"],
                r["attempt"],
                {"released_by": "reconciler", "dead_worker": r["worker"]},
            )
        except (TransitionError, TaskNotFound):
            continue  # it moved on while we looked: someone else handled it
        moved.append(row)
    if moved:
        await broker.enqueue(
            [TaskMessage(r["task_id"], r["task_type"], r["attempt"]) for r in moved]
        )
        for r in moved:
            r["status"] = "queued"
        await broker.emit(moved)
        released = len(moved)
    if requeued or released:
        log.warning(
            "reconciler: re-enqueued %d lost and released %d orphaned tasks", requeued, released
        )
    return {"requeued": requeued, "released": released}
