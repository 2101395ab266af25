"""The worker loop: read → claim (one UPDATE per batch) → run → complete → ack → events.

Ordering that makes it lose nothing and complete nothing twice:

* the claim is ``queued→running`` fenced on the message's attempt, so a duplicate or stale
  message claims nothing and is simply acked;
* XACK comes after the DB commit; a crash in between leaves an entry another worker
  XAUTOCLAIMs, and the row (finished, or on a newer attempt) tells it to just ack;
* a heartbeat re-XCLAIMs the entries of tasks still running, so a long task is never
  taken over while its worker lives; the reconciler repairs what Redis forgot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from redis.exceptions import RedisError

from qtaskdist_jupyter.config import Settings
from qtaskdist_jupyter.errors import (
    ConfigError,
    JobError,
    JobTimeout,
    ServiceUnavailable,
    TaskNotFound,
    TransitionError,
)
from qtaskdist_jupyter.queue import Broker
from qtaskdist_jupyter.runtime import freeze_startup_heap
from qtaskdist_jupyter.store import TaskStore
from qtaskdist_jupyter.streams import STREAMS, MalformedMessage, TaskMessage, streams_of

from .duties import Duties
from .executor import JobCancelled
from .jobs.common import error_report
from .outcomes import HOST, InFlight, plan_units, split_requests, time_limit
from .settle import Settler, Settling

log = logging.getLogger("qtaskdist_worker")
T = TypeVar("T")
POOL_TYPES = {"simulate": "simulate", "c_qir_convert": "convert"}
# Pool tasks claimed ahead, in --batch-size reads beyond one per job process: the next
# read and claim overlap the running requests, so a job process that finishes finds its
# next request waiting instead of idling through a settle, a read and a claim.
PREFETCH_BATCHES = 2
# How long a finished unit may wait for its request-mates before it is settled on its own:
# a request's completions go out in one statement, yet a slow unit never holds back the
# finished ones for longer than this.
SETTLE_AFTER_S = 0.05


# Job processes when --concurrency is not given: one per usable core (a job process runs
# one Aer call at a time on --threads-per-job threads, 1 by default), at most this many,
# since each holds qiskit and Aer (~130 MB RSS measured here).
MAX_DEFAULT_CONCURRENCY = 4


def default_concurrency() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_CONCURRENCY))


@dataclass
class WorkerOptions:
    task_types: list[str] = field(default_factory=lambda: list(STREAMS))
    concurrency: int = field(default_factory=default_concurrency)
    name: str = field(default_factory=lambda: f"{HOST}-{os.getpid()}")
    batch_size: int = 64
    visibility_timeout_s: float = 60.0
    burst: bool = False
    grace_s: float = 30.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 60.0
    reconcile_interval_s: float = 15.0
    threads_per_job: int = 1
    max_time_limit_s: float | None = None
    backend_concurrency: int = 32
    poll_interval_s: float = 1.0
    block_ms: int = 1000


class Worker(Duties, Settling):
    def __init__(self, settings: Settings, opts: WorkerOptions) -> None:
        if not settings.database_url or not settings.redis_url:
            raise ConfigError("the worker needs DATABASE_URL and REDIS_URL (or embedded ones)")
        self.settings = settings
        self.opts = opts
        self.name = opts.name
        self.streams = [s for t in opts.task_types for s in streams_of(t)]
        self.store = TaskStore.from_url(settings.database_url, pool_size=4)
        self.broker = Broker.from_url(settings.redis_url, events_maxlen=settings.events_maxlen)
        self.pool: Any = None
        self.runner: Any = None
        self.inflight: dict[uuid.UUID, InFlight] = {}
        self.jobs: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        # Each lane (job processes, backend polls) reads its own streams and waits on its
        # own room: a full pool must never park the loop in a blocking read of the
        # backend stream (that was the stall of issue 12), nor the other way round.
        self.room = {"pool": asyncio.Event(), "backend": asyncio.Event()}
        self.pool_tasks = 0
        self.backend_jobs = 0
        self.versions: dict[str, Any] = {}
        self.started = time.time()
        self.completed = 0
        lim = settings.limits
        self.cap_s = min(lim.max_time_limit_s, opts.max_time_limit_s or lim.max_time_limit_s)

    # ---- lifecycle -------------------------------------------------------------------
    async def run(self) -> int:
        await self._check_schema()
        await self._retrying(lambda: self.broker.ensure_groups(self.streams), "create groups")
        if any(t in POOL_TYPES for t in self.opts.task_types):
            from .executor import ExecutorPool

            self.pool = ExecutorPool(
                self.opts.concurrency,
                threads=self.opts.threads_per_job,
                limits=asdict(self.settings.limits),
            )
            await self.pool.start()
            self.versions = dict(self.pool.info)
        if "backend_run" in self.opts.task_types:
            from .backend import BackendRunner

            self.runner = BackendRunner(self.settings.qbraid_api_key, self.settings.qbraid_api_url)
        freeze_startup_heap()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        await self._retrying(self._heartbeat_once, "heartbeat")
        background = [
            asyncio.create_task(
                self._every(self.opts.visibility_timeout_s / 3, self._heartbeat_once)
            ),
            asyncio.create_task(self._every(0.5, self.broker.promote_due)),
            asyncio.create_task(self._every(self.opts.reconcile_interval_s, self._reconcile)),
            asyncio.create_task(
                self._every(max(0.2, self.opts.visibility_timeout_s / 2), self._autoclaim)
            ),
            asyncio.create_task(self._watch_cancels()),
        ]
        log.info("worker %s reading %s", self.name, ", ".join(self.streams))
        try:
            await self._main_loop()
            await self._drain()
        finally:
            for t in background:
                t.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(ServiceUnavailable):
                await self.broker.forget_worker(self.name)
            if self.pool is not None:
                await self.pool.close()
            await self.store.close()
            await self.broker.close()
        log.info("worker %s stopped after %d tasks", self.name, self.completed)
        return 0

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker %s: stop requested; finishing tasks in flight", self.name)
        self.stopping.set()
        for room in self.room.values():
            room.set()

    async def _check_schema(self) -> None:
        await self.store.check_schema()

    async def _retrying(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``fn`` until the DB / Redis answer: an outage delays work, it loses none."""
        delay = 0.2
        while True:
            try:
                return await fn()
            except ServiceUnavailable as exc:
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _every(self, period_s: float, fn: Callable[[], Awaitable[Any]]) -> None:
        while True:
            try:
                await fn()
            except ServiceUnavailable as exc:
                log.warning("%s: %s", getattr(fn, "__name__", fn), exc)
            except Exception:  # noqa: BLE001 - a background duty must not die
                log.exception("%s failed", getattr(fn, "__name__", fn))
            await asyncio.sleep(period_s)

    # ---- reading ---------------------------------------------------------------------
    def _lanes(self) -> dict[str, list[str]]:
        # Each type's priority stream comes first (fair share, docs/fair-share.md).
        pool = [s for t in self.opts.task_types if t in POOL_TYPES for s in streams_of(t)]
        backend = [s for t in self.opts.task_types if t == "backend_run" for s in streams_of(t)]
        return {k: v for k, v in (("pool", pool), ("backend", backend)) if v}

    def _has_room(self, lane: str) -> bool:
        if lane == "pool":
            ahead = self.opts.concurrency + PREFETCH_BATCHES
            return self.pool_tasks < self.opts.batch_size * ahead
        return self.backend_jobs < self.opts.backend_concurrency

    def _readable(self) -> list[str]:
        return [
            s for lane, streams in self._lanes().items() if self._has_room(lane) for s in streams
        ]

    async def _main_loop(self) -> None:
        await asyncio.gather(*(self._lane(k, v) for k, v in self._lanes().items()))

    async def _lane(self, lane: str, streams: list[str]) -> None:
        block = min(self.opts.block_ms, 200) if self.opts.burst else self.opts.block_ms
        room = self.room[lane]
        delay = 0.2
        while not self.stopping.is_set():
            if not self._has_room(lane):
                room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(room.wait(), timeout=0.5)
                continue
            try:
                entries = await self.broker.read(
                    streams, self.name, count=self.opts.batch_size, block_ms=block
                )
                if entries:
                    await self._accept(entries)
                elif self.opts.burst and await self._drained():
                    log.info("burst: nothing left to do on %s", ", ".join(streams))
                    return
                delay = 0.2
            except (ServiceUnavailable, RedisError) as exc:
                log.warning("%s; backing off %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _drained(self) -> bool:
        if self.inflight or self.jobs:
            return False
        return await self.store.active_count(self.opts.task_types) == 0

    def _decode(
        self,
        entries: list[tuple[str, str, dict[str, str]]],
        acks: list[tuple[str, str]],
        dead: list[tuple[str, dict[str, Any]]],
    ) -> list[tuple[str, str, TaskMessage]]:
        out = []
        for stream, eid, fields in entries:
            try:
                msg = TaskMessage.decode(fields)
                if stream not in streams_of(msg.task_type):
                    raise MalformedMessage(f"a {msg.task_type} message on {stream}")
            except MalformedMessage as exc:
                log.error("dead-lettering %s %s: %s", stream, eid, exc)
                dead.append((str(exc), {**fields, "stream": stream, "entry_id": eid}))
                acks.append((stream, eid))
                continue
            out.append((stream, eid, msg))
        return out

    async def _accept(self, entries: list[tuple[str, str, dict[str, str]]]) -> None:
        acks: list[tuple[str, str]] = []
        dead: list[tuple[str, dict[str, Any]]] = []
        msgs = self._decode(entries, acks, dead)
        rows = await self._retrying(
            lambda: self.store.claim_many(
                [(m.task_id, m.attempt) for _s, _e, m in msgs], self.name
            ),
            "claim",
        )
        await self._start(msgs, rows, acks, dead)

    async def _start(
        self,
        msgs: list[tuple[str, str, TaskMessage]],
        rows: list[dict[str, Any]],
        acks: list[tuple[str, str]],
        dead: list[tuple[str, dict[str, Any]]],
    ) -> None:
        by_id = {r["task_id"]: r for r in rows}
        items: list[InFlight] = []
        for stream, eid, msg in msgs:
            row = by_id.pop(msg.task_id, None)
            if row is None:
                # Finished, cancelled, on a newer attempt, or scheduled for later (its
                # retry message is in the delay ZSET): nothing to run for this entry.
                acks.append((stream, eid))
                continue
            item = InFlight(stream, eid, msg, row)
            self.inflight[item.task_id] = item
            items.append(item)
        for reason, fields in dead:
            await self._retrying(lambda r=reason, f=fields: self.broker.dead_letter(r, f), "dead")
        self._dispatch(items)
        if items or acks:
            # The jobs are already on their way: the running events go out while they
            # run, and a batch's completion waits for this (InFlight.announced).
            announced = asyncio.ensure_future(
                self._retrying(lambda: self.broker.settle([i.row for i in items], acks), "emit")
            )
            for i in items:
                i.announced = announced
            await announced

    def _dispatch(self, items: list[InFlight]) -> None:
        pool: dict[str, list[InFlight]] = {}
        for item in items:
            ttype = item.row["task_type"]
            if ttype == "backend_run":
                self._spawn(self._run_backend(item))
            else:
                pool.setdefault(POOL_TYPES[ttype], []).append(item)
        for kind, group in pool.items():
            # Units of a read are cut per job process, so every read is dealt to all of
            # them: a batch finishes sooner and completions come in smaller, closer steps.
            per_process = -(-self.opts.batch_size // self.opts.concurrency)
            units = plan_units(group, per_process)
            for request in split_requests(units, self.opts.concurrency):
                self._spawn(self._run_request(kind, request))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)

    # ---- running ---------------------------------------------------------------------
    async def _run_request(self, kind: str, units: list[list[InFlight]]) -> None:
        held = sum(len(u) for u in units)
        self.pool_tasks += held
        try:
            await self._run_units(kind, units)
        finally:
            self.pool_tasks -= held
            self.room["pool"].set()

    async def _run_units(self, kind: str, units: list[list[InFlight]]) -> None:
        """One request on one job process; finished units are settled as they come (see
        SETTLE_AFTER_S). When the request stops early, what ran is settled, the unit that
        stopped is judged on its own, and the units behind it run again in a new request."""
        lim = self.settings.limits
        timeouts_s = [
            min(time_limit(i.row["payload"], lim.time_limit_s, self.cap_s) for i in unit)
            for unit in units
        ]
        cancel = asyncio.Event()
        for unit in units:
            for i in unit:
                i.cancel = cancel
                if i.cancelled:
                    cancel.set()
        wire = [[i.request() for i in unit] for unit in units]
        settler = Settler(self._finish, SETTLE_AFTER_S)
        stop: JobError | None = None

        def on_reply(j: int, reply: dict[str, Any]) -> None:
            settler.add(units[j], reply["replies"], float(reply.get("wall_s", 0.0)))

        try:
            await self.pool.run(kind, wire, timeouts_s, on_reply, cancel)
        except JobError as exc:
            stop = exc
        except asyncio.CancelledError:
            # Shutting down past --grace-s: keep what finished; the drain releases the rest.
            await settler.close()
            raise
        await settler.close()
        if stop is None:
            return
        at = int(getattr(stop, "unit", 0))
        stuck, rest = units[at], units[at + 1 :]
        if isinstance(stop, JobCancelled):
            await self._drop([i for unit in units[at:] for i in unit if i.cancelled])
            rest = [u for u in ([i for i in unit if not i.cancelled] for unit in units[at:]) if u]
        elif isinstance(stop, JobTimeout) and len(stuck) > 1:
            # Someone in the shared Aer call is slow: each gets its own run and limit.
            rest = [[i] for i in stuck] + rest
        else:
            # A timeout of a lone task, or a crash while it ran (retryable, see ChildDied).
            await self._finish([(i, error_report(stop), 0.0, len(stuck)) for i in stuck])
        if rest:
            await self._run_units(kind, rest)

    async def _run_backend(self, item: InFlight) -> None:
        from .jobs.backend import run_backend

        self.backend_jobs += 1
        started = time.monotonic()
        item.cancel = asyncio.Event()
        if item.cancelled:
            item.cancel.set()
        try:
            lim = self.settings.limits
            try:
                result, meta = await run_backend(
                    item.row,
                    self.runner,
                    limits=lim,
                    time_limit_s=time_limit(item.row["payload"], lim.time_limit_s, self.cap_s),
                    cancel=item.cancel,
                    annotate=lambda m: self._annotate(item, m),
                    poll_s=self.opts.poll_interval_s,
                )
                outcome: dict[str, Any] = {"ok": True, "result": result, "meta": meta}
            except JobCancelled:
                await self._drop([item])
                return
            except Exception as exc:  # noqa: BLE001 - classified by error_report
                outcome = error_report(exc)
                if getattr(exc, "retryable", False):
                    outcome["retryable"] = True
            await self._finish([(item, outcome, time.monotonic() - started, 1)])
        finally:
            self.backend_jobs -= 1
            self.room["backend"].set()

    async def _annotate(self, item: InFlight, meta: dict[str, Any]) -> None:
        with contextlib.suppress(TransitionError, TaskNotFound):
            await self._retrying(
                lambda: self.store.merge_meta(item.task_id, item.attempt, meta), "annotate"
            )
        item.row["meta_data"] = {**(item.row.get("meta_data") or {}), **meta}

    async def _drop(self, items: list[InFlight]) -> None:
        """Tasks cancelled while they ran: the row already says so; just ack."""
        for i in items:
            self.inflight.pop(i.task_id, None)
        await self._retrying(
            lambda: self.broker.ack([(i.stream, i.entry_id) for i in items]), "ack"
        )


def describe(opts: WorkerOptions) -> str:
    return json.dumps(asdict(opts), default=str)
