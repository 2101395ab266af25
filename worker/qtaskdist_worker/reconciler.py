"""The reconciler: repairs what Redis lost and what dead workers left behind.

PostgreSQL is the source of truth. This machine's Redis keeps nothing on disk, so after a
restart (or a FLUSHALL) the streams, groups and delay ZSET are empty while rows still say
``queued``; and a worker killed with SIGKILL leaves rows ``running`` forever. Every worker
runs :func:`reconcile` periodically; a short Redis lock lets one of them do it at a time.
Duplicate messages it may add are harmless: claims are fenced on the row's attempt.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Collection, Container, Mapping, Sequence
from dataclasses import dataclass

from qtaskdist_jupyter.core.broker.wire import streams_of
from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from qtaskdist_jupyter.core.retention import GC_BATCH, GC_BATCHES_PER_PASS, GC_EVERY_S, gc_due

log = logging.getLogger(__name__)


def live_workers(
    workers: Mapping[str, Mapping[str, object]], stale_after_s: float, now: float | None = None
) -> set[str]:
    """The workers whose last heartbeat (``ts``, epoch seconds) is at most this old."""
    now = time.time() if now is None else now
    return {n for n, info in workers.items() if now - _beat_s(info) <= stale_after_s}


def _beat_s(info: Mapping[str, object]) -> float:
    """A heartbeat's ``ts`` (0 when absent); one that is no number never counts as fresh."""
    ts = info.get("ts", 0)
    return float(ts) if isinstance(ts, int | float | str) else -math.inf


def orphaned(
    row: TaskRow,
    alive: Container[str],
    me: str | None,
    mine: Container[uuid.UUID],
    stale_after_s: float,
    now: float | None = None,
) -> bool:
    """Whether a ``running`` row is left behind by its worker and should be released."""
    worker = row.worker
    if me is None or worker != me:
        return worker is None or worker not in alive
    # Our own rows are judged by what we hold, not by our heartbeat: right after a Redis
    # outage it is stale while we still run them (releasing them would run them twice),
    # and a claim whose reply an outage swallowed leaves a row running under our name
    # that nothing of ours runs (never releasing it would lose the task). The age check
    # covers a claim that committed but whose coroutine has not yet recorded it.
    if row.task_id in mine:
        return False
    claimed = row.claimed_at
    now = time.time() if now is None else now
    return claimed is None or now - claimed.timestamp() > stale_after_s


async def reconcile(
    queue: TaskQueue,
    task_types: Sequence[str],
    *,
    stale_after_s: float,
    lock_ttl_s: float = 10.0,
    force: bool = False,
    me: str | None = None,
    mine: Collection[uuid.UUID] = (),
) -> dict[str, int]:
    """One pass. Returns how many rows were re-enqueued and released.

    The lock lives ``lock_ttl_s`` and is never deleted: it spaces the fleet's passes that
    far apart, so the workers pass their reconcile interval here (a fixed 10 s made an
    interval of 1 s act like 10 s). ``me`` is the calling worker and ``mine`` the task ids
    it has in flight (a live view: it is read after the rows are).
    """
    if not force:
        locked = await queue.upkeep.lock_reconcile(lock_ttl_s)
        if not locked:
            return {"requeued": 0, "released": 0}
    streams = [s for t in task_types for s in streams_of(t)]
    await queue.upkeep.prepare(streams)
    requeued = await queue.requeue_lost(streams, task_types)
    released = await _release_orphans(queue, task_types, stale_after_s, me, mine)
    if requeued or released:
        log.warning(
            "reconciler: re-enqueued %d lost and released %d orphaned tasks", requeued, released
        )
    return {"requeued": requeued, "released": released}


async def _release_orphans(
    queue: TaskQueue,
    task_types: Sequence[str],
    stale_after_s: float,
    me: str | None,
    mine: Collection[uuid.UUID],
) -> int:
    """Release and publish the ``running`` rows whose worker stopped heartbeating."""
    alive = live_workers(await queue.broker.workers(), stale_after_s)
    orphans = [
        r
        for r in await queue.running()
        if r.task_type in task_types and orphaned(r, alive, me, mine, stale_after_s)
    ]
    releases = [
        (
            r.task_id,
            r.attempt,
            {"released_by": "reconciler", "dead_worker": r.worker},
            f"worker {r.worker} stopped heartbeating",
        )
        for r in orphans
    ]
    return len(await queue.release(releases)) if releases else 0


@dataclass
class Reconciler:
    """A worker's reconciler: :func:`reconcile` over its task types, with what it holds."""

    queue: TaskQueue
    task_types: list[str]
    stale_after_s: float
    # The lock spaces the fleet's passes one reconcile interval apart (see reconcile).
    interval_s: float
    me: str
    mine: Collection[uuid.UUID]
    # Finished tasks older than this are deleted (QTASKDIST_RETENTION_S; 0: never).
    retention_s: float = 0.0

    async def run_once(self) -> dict[str, int]:
        done = await reconcile(
            self.queue,
            self.task_types,
            stale_after_s=self.stale_after_s,
            lock_ttl_s=self.interval_s,
            me=self.me,
            mine=self.mine,
        )
        done["deleted"] = await self.collect_garbage()
        return done

    async def collect_garbage(self) -> int:
        """The retention pass: one worker of the fleet every GC_EVERY_S deletes up to
        GC_BATCHES_PER_PASS batches of expired finished tasks (with their arrays)."""
        if not gc_due(self.retention_s) or not await self.queue.upkeep.lock_gc(GC_EVERY_S):
            return 0
        deleted = await self.queue.upkeep.purge(
            self.retention_s, batch=GC_BATCH, max_batches=GC_BATCHES_PER_PASS
        )
        if deleted:
            log.info(
                "retention: deleted %d finished tasks older than %g s", deleted, self.retention_s
            )
        return deleted
