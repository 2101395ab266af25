"""Running claimed tasks: the ``pool`` lane's units on the job processes, the ``backend``
lane's tasks as polls on the event loop (each type's lane and job: core/kinds.py); what
they end with goes to the :class:`Finisher`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core.budget import aer_max_memory_mb
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import JobError, JobTimeout, TaskNotFound, TransitionError
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.kinds import kind_of, load, of_lane
from qtaskdist_jupyter.core.queue import TaskQueue

from .executor import ExecutorPool, JobCancelled
from .inflight import InFlightRegistry
from .jobs.common import error_report
from .retry import until_up
from .settle import Finisher, Settler
from .starts import Starter
from .units import InFlight, plan_units, split_requests, time_limit

if TYPE_CHECKING:
    from .jobs.protocol import Outcome, UnitReply

log = logging.getLogger("qtaskdist_worker")
# Pool tasks claimed ahead, in --batch-size reads beyond one per job process: the next
# read and claim overlap the running requests, so a job process that finishes finds its
# next request waiting instead of idling through a settle, a read and a claim. Kept
# small because a priority task waits behind whatever is claimed (docs/fair-share.md).
PREFETCH_BATCHES = 1
# How long a finished unit may wait for its request-mates before it is settled on its own:
# a request's completions go out in one statement, yet a slow unit never holds back the
# finished ones for longer than this.
SETTLE_AFTER_S = 0.05
# A task with at least this many parameter bindings may borrow idle job processes' threads
# (Dispatcher._lent_threads): below it, Aer's thread start-up costs more than it saves.
SWEEP_MIN_BINDINGS = 64


@dataclass
class DispatchOptions:
    batch_size: int
    concurrency: int
    threads_per_job: int
    backend_concurrency: int
    poll_interval_s: float
    # Address space a job process may add to its start-up size (memlimit.py; 0: unlimited).
    job_memory_headroom: int = 0


@dataclass
class Dispatcher:
    """Owns the job processes, the backend runner and the running jobs, and keeps each
    lane's room: ``pool`` (tasks claimed for the job processes) and ``backend``."""

    queue: TaskQueue
    inflight: InFlightRegistry
    finisher: Finisher
    limits: Limits
    opts: DispatchOptions
    # The longest time limit this worker grants (--max-time-limit-s).
    cap_s: float
    pool: ExecutorPool | None = None
    runner: Any = None  # a BackendRunner once started with backend_run
    jobs: set[asyncio.Task[None]] = field(default_factory=set)
    pool_tasks: int = 0
    backend_jobs: int = 0
    # Set whenever a lane may have room again (and on stop, to wake its reader).
    room: dict[str, asyncio.Event] = field(
        default_factory=lambda: {"pool": asyncio.Event(), "backend": asyncio.Event()}
    )
    starter: Starter = field(init=False)

    def __post_init__(self) -> None:
        # Starts are written on the settle's rhythm: a unit's start and end cost one
        # statement each, shared with the other units of that moment.
        self.starter = Starter(self.queue, SETTLE_AFTER_S)

    async def start(
        self, task_types: list[str], qbraid_api_key: str | None, qbraid_api_url: str | None
    ) -> None:
        if of_lane("pool", task_types):
            self.pool = ExecutorPool(
                self.opts.concurrency,
                threads=self.opts.threads_per_job,
                limits=asdict(self.limits),
                memory_headroom=self.opts.job_memory_headroom,
            )
            await self.pool.start()
            self.finisher.versions = self.pool.info
            self.finisher.spool_dir = self.pool.spool_dir
        if of_lane("backend", task_types):
            # qBraid's SDK is heavy and only the backend lane needs it.
            from .qbraid_runner import BackendRunner

            budget_mb = aer_max_memory_mb(self.limits.max_task_memory_bytes)
            bond = self.limits.mps_max_bond_dimension
            self.runner = BackendRunner(qbraid_api_key, qbraid_api_url, budget_mb, bond)

    def has_room(self, lane: str) -> bool:
        if lane == "pool":
            ahead = self.opts.concurrency + PREFETCH_BATCHES
            return self.pool_tasks < self.opts.batch_size * ahead
        return self.backend_jobs < self.opts.backend_concurrency

    async def wait_for_room(self, lane: str, timeout_s: float) -> None:
        room = self.room[lane]
        room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.wait(), timeout=timeout_s)

    def wake(self) -> None:
        for room in self.room.values():
            room.set()

    def dispatch(self, items: list[InFlight]) -> None:
        pool: dict[str, list[InFlight]] = {}
        for item in items:
            ttype = item.row.task_type
            if kind_of(ttype).lane == "backend":
                self._spawn(self._run_backend(item))
            else:
                # The job process's request names the task type (jobs.handle_request).
                pool.setdefault(ttype, []).append(item)
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

    async def wait_jobs(self, timeout_s: float) -> None:
        if self.jobs:
            await asyncio.wait(set(self.jobs), timeout=timeout_s)

    async def kill_jobs(self) -> None:
        """Stop the jobs still running (shutting down past --grace-s)."""
        if self.pool is not None:
            self.pool.closing = True
        for task in list(self.jobs):
            task.cancel()
        if self.jobs:
            await asyncio.gather(*self.jobs, return_exceptions=True)

    async def close(self) -> None:
        await self.starter.close()
        if self.pool is not None:
            await self.pool.close()

    # ---- job processes ---------------------------------------------------------------
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
        assert self.pool is not None
        timeouts_s = [
            min(time_limit(i.row.payload, self.limits.time_limit_s, self.cap_s) for i in unit)
            for unit in units
        ]
        cancel = asyncio.Event()
        for unit in units:
            for i in unit:
                i.cancel = cancel
                if i.cancelled:
                    cancel.set()
        wire = [[i.request() for i in unit] for unit in units]
        settler = Settler(self.finisher.finish, SETTLE_AFTER_S, self.starter.withdraw)
        stop: JobError | None = None

        def on_reply(j: int, reply: UnitReply) -> None:
            settler.add(units[j], reply["replies"], float(reply.get("wall_s", 0.0)))

        threads = self._lent_threads(kind, units)
        try:
            started = self.starter.add
            await self.pool.run(
                kind, wire, timeouts_s, on_reply, cancel, threads, lambda j: started(units[j])
            )
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
            await self.finisher.finish([(i, error_report(stop), 0.0, len(stuck)) for i in stuck])
        if rest:
            await self._run_units(kind, rest)

    def _lent_threads(self, kind: str, units: list[list[InFlight]]) -> int | None:
        """Threads for a sweep that starts while every job process is idle: all of the
        pool's, so Aer runs its bindings side by side instead of leaving the cores idle.
        (Job processes wait passively, OMP_WAIT_POLICY, so a request that starts meanwhile
        shares the cores instead of fighting spinning threads.)"""
        assert self.pool is not None
        if not kind_of(kind).rules.shares_aer_calls or len(units) != 1 or len(units[0]) != 1:
            return None
        bindings = units[0][0].row.payload.get("parameter_bindings")
        if not isinstance(bindings, list) or len(bindings) < SWEEP_MIN_BINDINGS:
            return None
        if self.pool.idle < self.pool.size or self.opts.concurrency < 2:
            return None
        return self.opts.threads_per_job * self.opts.concurrency

    # ---- backend polls ---------------------------------------------------------------
    async def _run_backend(self, item: InFlight) -> None:
        # The type's job (jobs.backend imports the qBraid SDK): only backend-lane workers
        # load it.
        run_backend = load(kind_of(item.row.task_type).job)

        self.backend_jobs += 1
        started = time.monotonic()
        self.starter.add([item])
        item.cancel = asyncio.Event()
        if item.cancelled:
            item.cancel.set()
        try:
            lim = self.limits
            try:
                result, meta = await run_backend(
                    item.row.job_fields(),
                    self.runner,
                    limits=lim,
                    time_limit_s=time_limit(item.row.payload, lim.time_limit_s, self.cap_s),
                    cancel=item.cancel,
                    annotate=lambda m: self._annotate(item, m),
                    poll_s=self.opts.poll_interval_s,
                )
                outcome: Outcome = {"ok": True, "result": result, "meta": meta}
            except JobCancelled:
                await self._drop([item])
                return
            except Exception as exc:  # noqa: BLE001 - classified by error_report
                outcome = error_report(exc)
                if getattr(exc, "retryable", False):
                    outcome["retryable"] = True
            await self.finisher.finish([(item, outcome, time.monotonic() - started, 1)])
        finally:
            self.backend_jobs -= 1
            self.room["backend"].set()

    async def _annotate(self, item: InFlight, meta: JsonObject) -> None:
        with contextlib.suppress(TransitionError, TaskNotFound):
            await until_up(
                lambda: self.queue.annotate(item.task_id, item.attempt, meta), "annotate"
            )
        item.row = item.row.with_meta(meta)

    async def _drop(self, items: list[InFlight]) -> None:
        """Tasks cancelled while they ran: the row already says so; just ack."""
        self.inflight.remove(items)
        await self.queue.ack([(i.stream, i.entry_id) for i in items], retrying=until_up)
