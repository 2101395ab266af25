"""The worker: read → claim (one UPDATE per batch) → run → complete → ack → events.

Ordering that makes it lose nothing and complete nothing twice:

* the claim is ``queued→running`` fenced on the message's attempt, so a duplicate or stale
  message claims nothing and is simply acked;
* XACK comes after the DB commit; a crash in between leaves an entry another worker
  XAUTOCLAIMs, and the row (finished, or on a newer attempt) tells it to just ack;
* a heartbeat re-XCLAIMs the entries of tasks still running, so a long task is never
  taken over while its worker lives; the reconciler repairs what Redis forgot.

:class:`Worker` reads and claims; the rest is done by the collaborators it owns, each with
its own declared state: the in-flight registry, the dispatcher (job processes and backend
polls), the finisher (settles what ended), the heartbeat, the cancel watch, the
autoclaimer and the reconciler. The periodic ones run as named side tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.broker.keys import STREAMS
from qtaskdist_jupyter.core.broker.wire import streams_of
from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.errors import (
    ConfigError,
    ServiceUnavailable,
)
from qtaskdist_jupyter.core.kinds import of_lane
from qtaskdist_jupyter.core.options import DEFAULTS as _MODEL
from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from qtaskdist_jupyter.core.runtime import freeze_startup_heap
from qtaskdist_jupyter.core.store.store import TaskStore

from .autoclaim import Autoclaimer
from .dispatch import Dispatcher, DispatchOptions
from .heartbeat import CancelWatch, Heartbeat
from .inflight import Claimable, DeadLetter, Entry, InFlightRegistry, decode_entries
from .memlimit import headroom_bytes
from .reconciler import Reconciler
from .retry import every, until_up
from .settle import Finisher
from .units import HOST, InFlight

log = logging.getLogger("qtaskdist_worker")
# How often due retries are moved from the delay ZSET onto their streams.
PROMOTE_EVERY_S = 0.5

# Job processes when --concurrency is not given: one per usable core (a job process runs
# one Aer call at a time on --threads-per-job threads, 1 by default), at most this many,
# since each holds its own qiskit and Aer in memory.
MAX_DEFAULT_CONCURRENCY = 4


def default_concurrency() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_CONCURRENCY))


@dataclass
class WorkerOptions:
    """The worker's options. Each default is the settings model's (core/options.py: the
    flags and QTASKDIST_WORKER_* variables are derived from it), except where the model
    says None: the machine's (concurrency, name) or the limit's cap (max_time_limit_s)."""

    task_types: list[str] = field(default_factory=lambda: list(STREAMS))
    concurrency: int = field(default_factory=default_concurrency)
    name: str = field(default_factory=lambda: f"{HOST}-{os.getpid()}")
    batch_size: int = _MODEL.batch_size
    visibility_timeout_s: float = _MODEL.visibility_timeout_s
    burst: bool = _MODEL.burst
    grace_s: float = _MODEL.grace_s
    retry_base_s: float = _MODEL.retry_base_s
    retry_cap_s: float = _MODEL.retry_cap_s
    reconcile_interval_s: float = _MODEL.reconcile_interval_s
    threads_per_job: int = _MODEL.threads_per_job
    max_time_limit_s: float | None = None
    backend_concurrency: int = _MODEL.backend_concurrency
    poll_interval_s: float = _MODEL.poll_interval_s
    block_ms: int = 1000
    # Headroom of a job process's address-space limit; None: derived (memlimit.py).
    job_memory_mb: int | None = None


def lanes_of(task_types: list[str]) -> dict[str, list[str]]:
    """The streams each lane reads: ``pool`` (job processes) and ``backend`` (polls).

    Each lane waits on its own room: a full pool must never park the worker in a blocking
    read of the backend stream (the stall of issue 12), nor the other way round. Each
    type's priority stream comes first (fair share, docs/fair-share.md)."""
    pool = [s for t in of_lane("pool", task_types) for s in streams_of(t)]
    backend = [s for t in of_lane("backend", task_types) for s in streams_of(t)]
    return {k: v for k, v in (("pool", pool), ("backend", backend)) if v}


async def first_ended(
    tasks: dict[str, asyncio.Task[None]],
) -> list[tuple[str, BaseException | None]]:
    """Wait until one of the named tasks ends; (name, its exception) of those that did."""
    done, _pending = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    return [
        (name, None if t.cancelled() else t.exception()) for name, t in tasks.items() if t in done
    ]


class Worker:
    """Reads its lanes and claims; its collaborators share the store, the broker and the
    in-flight registry, and reach the worker only through ``readable`` and ``start``."""

    def __init__(self, settings: Settings, opts: WorkerOptions) -> None:
        if not settings.database_url or not settings.redis_url:
            raise ConfigError("the worker needs DATABASE_URL and REDIS_URL (or embedded ones)")
        self.settings = settings
        self.opts = opts
        self.name = opts.name
        self.streams = [s for t in opts.task_types for s in streams_of(t)]
        self.lanes = lanes_of(opts.task_types)
        self.store = TaskStore.from_url(settings.database_url, pool_size=4)
        self.broker = Broker.from_url(settings.redis_url, events_maxlen=settings.events_maxlen)
        # Every write of a task's state goes through the queue facade.
        self.queue = TaskQueue(self.store, self.broker)
        self.stopping = asyncio.Event()
        # Set when a side task ended while the worker ran: it stops, and exits 1.
        self.side_task_failed = False
        lim = settings.limits
        store, broker, queue, name = self.store, self.broker, self.queue, self.name
        self.inflight = InFlightRegistry()
        self.finisher = Finisher(queue, self.inflight, name, opts.retry_base_s, opts.retry_cap_s)
        self.dispatcher = self._dispatcher()
        self.heartbeat = Heartbeat(
            store,
            queue.upkeep,
            self.inflight,
            name,
            opts.task_types,
            opts.concurrency,
            completed=lambda: self.finisher.completed,
        )
        self.cancel_watch = CancelWatch(broker, self.inflight)
        self.autoclaimer = Autoclaimer(
            queue,
            self.inflight,
            name,
            opts.visibility_timeout_s,
            opts.batch_size,
            self.stopping,
            readable=self.readable,
            start=self.start,
        )
        self.reconciler = Reconciler(
            queue,
            opts.task_types,
            stale_after_s=opts.visibility_timeout_s,
            interval_s=opts.reconcile_interval_s,
            me=name,
            mine=self.inflight,
            retention_s=lim.retention_s,
        )

    def _dispatcher(self) -> Dispatcher:
        """The dispatcher of this worker's lanes, with the options the worker was given."""
        lim, opts = self.settings.limits, self.opts
        return Dispatcher(
            self.queue,
            self.inflight,
            self.finisher,
            lim,
            DispatchOptions(
                opts.batch_size,
                opts.concurrency,
                opts.threads_per_job,
                opts.backend_concurrency,
                opts.poll_interval_s,
                headroom_bytes(lim, opts.job_memory_mb),
            ),
            cap_s=min(lim.max_time_limit_s, opts.max_time_limit_s or lim.max_time_limit_s),
        )

    # ---- lifecycle -------------------------------------------------------------------
    async def run(self) -> int:
        await self.store.check_schema()
        await until_up(lambda: self.queue.upkeep.prepare(self.streams), "create groups")
        await self.dispatcher.start(
            self.opts.task_types, self.settings.qbraid_api_key, self.settings.qbraid_api_url
        )
        freeze_startup_heap()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        await until_up(self.heartbeat.beat, "heartbeat")
        side = self._start_side_tasks()
        watch = asyncio.create_task(self._watch_side_tasks(side), name="side-task watch")
        log.info("worker %s reading %s", self.name, ", ".join(self.streams))
        try:
            await asyncio.gather(*(self._read(k, v) for k, v in self.lanes.items()))
            # The side tasks (the heartbeat above all) keep running through the drain:
            # the tasks it waits for are still this worker's.
            await self._drain()
        finally:
            watch.cancel()
            for task in side.values():
                task.cancel()
            await asyncio.gather(watch, *side.values(), return_exceptions=True)
            with contextlib.suppress(ServiceUnavailable):
                await self.queue.upkeep.forget(self.name)
            await self.dispatcher.close()
            await self.store.close()
            await self.broker.close()
        log.info("worker %s stopped after %d tasks", self.name, self.finisher.completed)
        return 1 if self.side_task_failed else 0

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker %s: stop requested; finishing tasks in flight", self.name)
        self.stopping.set()
        self.dispatcher.wake()

    def _start_side_tasks(self) -> dict[str, asyncio.Task[None]]:
        vis_s = self.opts.visibility_timeout_s
        duties: dict[str, Coroutine[Any, Any, None]] = {
            "heartbeat": every(vis_s / 3, self.heartbeat.beat),
            "promote due retries": every(PROMOTE_EVERY_S, self.queue.promote_due),
            "reconciler": every(self.opts.reconcile_interval_s, self.reconciler.run_once),
            "autoclaim": every(max(0.2, vis_s / 2), self.autoclaimer.run_once),
            "cancel watch": self.cancel_watch.run(),
        }
        return {name: asyncio.create_task(coro, name=name) for name, coro in duties.items()}

    async def _watch_side_tasks(self, side: dict[str, asyncio.Task[None]]) -> None:
        """The side tasks never end by themselves (each survives its own failures); one
        that does is a bug, and the worker stops rather than run on without it (without
        a heartbeat, say, other workers would take its tasks over while it runs them)."""
        for name, exc in await first_ended(side):
            log.error(
                "side task %r ended (%s); stopping the worker",
                name,
                repr(exc) if exc else "no error",
                exc_info=exc,
            )
        self.side_task_failed = True
        self.stop()

    # ---- reading ---------------------------------------------------------------------
    def readable(self) -> list[str]:
        """The streams of the lanes with room for more tasks now."""
        return [
            s
            for lane, streams in self.lanes.items()
            if self.dispatcher.has_room(lane)
            for s in streams
        ]

    async def _read(self, lane: str, streams: list[str]) -> None:
        """Read ``lane``'s streams while it has room, until the worker stops. An outage
        is waited out (:func:`until_up`), and ends the loop if the worker stops meanwhile;
        any other error (a data error: a key of the wrong type, a refused command) ends
        the worker loudly rather than be read again for good."""
        block = min(self.opts.block_ms, 200) if self.opts.burst else self.opts.block_ms
        size = self.opts.batch_size
        while not self.stopping.is_set():
            if not self.dispatcher.has_room(lane):
                await self.dispatcher.wait_for_room(lane, timeout_s=0.5)
                continue
            try:
                entries = await until_up(
                    lambda: self.queue.upkeep.receive(
                        streams, self.name, count=size, block_ms=block
                    ),
                    f"read {lane}",
                    unless=self.stopping,
                )
                if entries:
                    await self._accept(entries)
                elif self.opts.burst and await until_up(self._drained, "check drained"):
                    log.info("burst: nothing left to do on %s", ", ".join(streams))
                    return
            except ServiceUnavailable:
                if not self.stopping.is_set():
                    raise
                return

    async def _drained(self) -> bool:
        if self.inflight or self.dispatcher.jobs:
            return False
        return await self.store.active_count(self.opts.task_types) == 0

    async def _accept(self, entries: list[Entry]) -> None:
        acks: list[tuple[str, str]] = []
        dead: list[DeadLetter] = []
        msgs = decode_entries(entries, acks, dead)
        claims = [(m.task_id, m.attempt) for _s, _e, m in msgs]
        rows = await until_up(lambda: self.queue.claim(claims, self.name), "claim")
        await self.start(msgs, rows, acks, dead)

    async def start(
        self,
        msgs: list[Claimable],
        rows: list[TaskRow],
        acks: list[tuple[str, str]],
        dead: list[DeadLetter],
    ) -> None:
        """Run the claimed rows of ``msgs``; ack the entries that claimed nothing."""
        by_id = {r.task_id: r for r in rows}
        items: list[InFlight] = []
        for stream, eid, msg in msgs:
            row = by_id.pop(msg.task_id, None)
            if row is None or msg.task_id in self.inflight:
                # Finished, cancelled, on a newer attempt, or scheduled for later (its
                # retry message is in the delay ZSET), or a duplicate message of a task
                # this worker runs already (the claim answers its own rows again, see
                # store.statements._CLAIM): nothing to run for this entry.
                acks.append((stream, eid))
                continue
            item = InFlight(stream, eid, msg, row)
            self.inflight.add(item)
            items.append(item)
        for reason, fields in dead:
            await until_up(lambda r=reason, f=fields: self.queue.dead_letter(r, f), "dead")
        self.dispatcher.dispatch(items)
        if items or acks:
            # The jobs are already on their way: the running events go out while they
            # run, and a batch's completion waits for this (InFlight.announced).
            announced = asyncio.ensure_future(
                until_up(lambda: self.queue.announce([i.row for i in items], acks), "emit")
            )
            for i in items:
                i.announced = announced
            await announced

    # ---- shutdown --------------------------------------------------------------------
    async def _drain(self) -> None:
        """Let the tasks in flight finish for --grace-s; then kill what is left, release
        those rows to ``queued``, enqueue them again and ack their old entries."""
        await self.dispatcher.wait_jobs(self.opts.grace_s)
        left = self.inflight.all()
        await self.dispatcher.kill_jobs()
        meta = {"released_by": f"{self.name} (shutdown)"}
        why = f"worker {self.name} shut down before it finished (past --grace-s)"
        releases = [(i.task_id, i.attempt, meta, why) for i in left]
        moved = await self.queue.release(releases, retrying=until_up)
        if moved:
            log.warning("released %d unfinished tasks back to the queue", len(moved))
        if left:
            await self.queue.ack([(i.stream, i.entry_id) for i in left], retrying=until_up)
        self.inflight.clear()
