"""Upkeep: the fleet's own writes, beside the task-state verbs of
:class:`~qtaskdist_jupyter.core.queue.queue.TaskQueue`.

A worker writes more than task states: it creates the consumer groups, reads entries into
its pending list (XREADGROUP, XAUTOCLAIM), keeps their idle time short and its heartbeat
fresh, forgets itself on the way out, takes the fleet's locks, and deletes expired tasks.
None of these moves a task's status or emits an event, so no write order ties them to the
task verbs; they are here so that nothing outside this package writes to the store or the
broker (tests/unit/test_queue_writes.py). Each verb is one port call, or a short sequence
of them in the order the docstring gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qtaskdist_jupyter.core.broker.wire import WorkerBeat
from qtaskdist_jupyter.core.queue.ports import BrokerPort, Entry, StorePort


class Upkeep:
    def __init__(self, store: StorePort, broker: BrokerPort) -> None:
        self.store = store
        self.broker = broker

    # ---- a worker's streams ----------------------------------------------------------
    async def prepare(self, streams: Sequence[str]) -> None:
        """Create the consumer group of each stream (and the stream) where missing."""
        await self.broker.ensure_groups(streams)

    async def receive(
        self, streams: Sequence[str], worker: str, *, count: int, block_ms: int
    ) -> list[Entry]:
        """New entries of ``streams`` for ``worker`` (XREADGROUP: they join its pending
        list until acked), waiting up to ``block_ms`` for one."""
        return await self.broker.read(streams, worker, count=count, block_ms=block_ms)

    async def take_idle(
        self, stream: str, worker: str, *, min_idle_ms: int, count: int
    ) -> list[Entry]:
        """Entries of ``stream`` left idle past ``min_idle_ms`` by another consumer, now
        ``worker``'s (XAUTOCLAIM)."""
        return await self.broker.autoclaim(stream, worker, min_idle_ms=min_idle_ms, count=count)

    # ---- signs of life ---------------------------------------------------------------
    async def beat(
        self, worker: str, holding: Mapping[str, Sequence[str]], info: WorkerBeat
    ) -> None:
        """Reset the idle time of the entries ``worker`` holds (``holding``: stream →
        entry ids; XCLAIM justid), then write its heartbeat."""
        for stream, ids in holding.items():
            await self.broker.touch(stream, worker, ids)
        await self.broker.heartbeat(worker, info)

    async def forget(self, worker: str) -> None:
        """Remove ``worker``'s heartbeat (it stopped)."""
        await self.broker.forget_worker(worker)

    # ---- the fleet's passes ----------------------------------------------------------
    async def lock_reconcile(self, ttl_s: float) -> bool:
        """True for the one worker of the fleet whose reconciler pass runs now."""
        return await self.broker.take_reconcile_lock(ttl_s)

    async def lock_gc(self, ttl_s: float) -> bool:
        """True for the one worker of the fleet whose retention pass runs now."""
        return await self.broker.take_gc_lock(ttl_s)

    async def purge(self, age_s: float, *, batch: int, max_batches: int | None = None) -> int:
        """Delete finished tasks older than ``age_s`` (with their arrays); how many."""
        return await purge(self.store, age_s, batch=batch, max_batches=max_batches)


async def purge(
    store: StorePort, age_s: float, *, batch: int, max_batches: int | None = None
) -> int:
    """The retention pass on ``store`` alone (``qtaskdist gc`` has no broker): finished
    tasks older than ``age_s`` deleted ``batch`` at a time, at most ``max_batches``
    batches (None: until none is left)."""
    return await store.gc(age_s, batch=batch, max_batches=max_batches)
