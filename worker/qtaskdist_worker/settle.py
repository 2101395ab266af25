"""How a worker ends a batch: results or errors into the rows (one statement for the
completions), retries with backoff, dead letters, then the events and the acks.

:class:`Settler` gathers the finished units of one request; :class:`Finisher` (one per
worker) settles what it hands over."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from qtaskdist_jupyter.core.queue.ports import Done

from . import metrics
from .inflight import InFlightRegistry
from .results_out import complete_all, store_arrays
from .retry import backoff_s, until_up
from .units import InFlight, profile

if TYPE_CHECKING:
    from .jobs.protocol import Failure, Outcome, Versions

log = logging.getLogger("qtaskdist_worker")


# A task's end as the worker settles it: (task, outcome, run time in s, tasks in its unit).
Finished = tuple[InFlight, "Outcome", float, int]
# A failure to write: (task, its report, meta, whether it is retried).
Failing = tuple[InFlight, "Failure", JsonObject, bool]
# For the metrics: (task, outcome, run time, queue wait).
Ended = tuple[InFlight, str, float, float | None]


async def _after_their_running_events(items: list[InFlight]) -> None:
    """Wait for the writes of these tasks' running events, the claim's and the start's
    (whose failure, if any, the main loop or the Starter handles: not raised again here).

    Before the outcome's write, not just its event: a fast task's start batch is then
    in the row (and its ``started`` event in the stream) before its completion, so every
    attempt that ran has its start event and a late start write has nothing to race. The
    completion still carries its start (task_times.start_at_end) for a start write that
    failed."""
    announced = {i.announced for i in items if i.announced is not None}
    announced |= {i.start_written for i in items if i.start_written is not None}
    if announced:
        await asyncio.wait(announced)


class Settler:
    """Collects the finished units of one request and settles them together.

    A unit's tasks wait at most ``settle_after_s`` for request-mates, so a request of quick
    tasks costs one completion statement and one events + acks call, while a slow unit
    never holds back tasks that finished before it.
    """

    def __init__(
        self,
        finish: Callable[[list[Finished]], Awaitable[None]],
        settle_after_s: float,
        withdraw: Callable[[list[InFlight]], None] = lambda items: None,
    ) -> None:
        self.finish = finish
        # Called with a batch's tasks as it settles: the Starter's withdraw, so the ends of
        # tasks whose start stamps have not gone out yet carry them instead.
        self.withdraw = withdraw
        self.settle_after_s = settle_after_s
        self.waiting: list[Finished] = []
        self.timer: asyncio.TimerHandle | None = None
        self.flushes: set[asyncio.Future[None]] = set()

    def add(self, unit: list[InFlight], replies: dict[str, Outcome], wall_s: float) -> None:
        missing: Failure = {
            "ok": False,
            "error": "the job process returned no result",
            "retryable": True,
        }
        self.waiting += [(i, replies.get(i.key) or missing, wall_s, len(unit)) for i in unit]
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.settle_after_s, self._flush_in_background)

    def _flush_in_background(self) -> None:
        self.timer = None
        flush = asyncio.ensure_future(self.flush())
        self.flushes.add(flush)
        flush.add_done_callback(self.flushes.discard)

    async def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.waiting = self.waiting, []
        if batch:
            self.withdraw([f[0] for f in batch])
            await self.finish(batch)

    async def close(self) -> None:
        """Settle everything still waiting, and wait for the flushes under way."""
        await self.flush()
        if self.flushes:
            await asyncio.gather(*self.flushes)


@dataclass
class Finisher:
    """Ends tasks for the worker: writes their outcome, schedules their retries, emits
    their events, acks their entries, and takes them out of the in-flight registry."""

    queue: TaskQueue
    inflight: InFlightRegistry
    name: str
    retry_base_s: float
    retry_cap_s: float
    # Known once the job processes run: their qiskit / Aer versions and spool directory.
    versions: Versions | None = None
    spool_dir: str | None = None
    completed: int = 0

    async def finish(self, finished: list[Finished]) -> None:
        """Row first, then message, then events and acks: results (with their arrays) and
        failures are committed, then the batch's events go out with its acks."""
        events: list[TaskRow] = []
        items = [f[0] for f in finished]
        replies = {i.key: out for i, out, _r, _b in finished}
        await _after_their_running_events(items)
        await store_arrays(self.queue, self.spool_dir, until_up, items, replies)
        done, failures, ended = self._sorted(finished, replies)
        written: set[uuid.UUID] = set()
        refused: dict[uuid.UUID, str] = {}
        if done:
            rows, refused = await complete_all(self.queue, until_up, done)
            written = {r.task_id for r in rows}
            events += rows
            self.completed += len(rows)
            # Not written: refused by the attempt fence (logged, dropped) or, for its data,
            # by PostgreSQL (the task fails with the one line why).
            self._refused(items, [d for d in done if d[0] not in refused], rows)
            failures += self._refused_failures(finished, refused)
        for item, out, meta, retry in failures:
            row = await self._fail(item, out, meta, bool(retry))
            events += [row] if row is not None else []
        _count(ended, written, refused)
        acks = [(i.stream, i.entry_id) for i in items]
        await until_up(lambda: self.queue.settle(events, acks), "settle")
        self.inflight.remove(items)

    def _sorted(
        self, finished: list[Finished], replies: dict[str, Outcome]
    ) -> tuple[list[Done], list[Failing], list[Ended]]:
        """Each finished task's profile, sorted: completions to write, failures (with
        whether they are retried), and every task's outcome for the metrics."""
        done: list[Done] = []
        failures: list[Failing] = []
        ended: list[Ended] = []
        now = datetime.now(UTC)
        for item, _out, run_time_s, batched_with in finished:
            out = replies[item.key]
            kind = "completed" if out["ok"] else "failed"
            retry = bool(
                out["ok"] is not True
                and out.get("retryable")
                and (item.row.retry_count < item.row.max_retries)
            )
            meta = profile(
                item,
                out,
                worker=self.name,
                run_time_s=run_time_s,
                batched_with=batched_with,
                versions=self.versions,
                result_kind="retry" if retry else kind,
                now=now,
            )
            wait_s = meta["queue_wait_s"]
            wait_s = wait_s if isinstance(wait_s, (int, float)) else None
            ended.append((item, "retry" if retry else kind, run_time_s, wait_s))
            if out["ok"] is True:
                done.append((item.task_id, item.attempt, out["result"], meta))
            else:
                failures.append((item, out, meta, retry))
        return done, failures, ended

    def _refused_failures(
        self, finished: list[Finished], refused: dict[uuid.UUID, str]
    ) -> list[Failing]:
        """The completions PostgreSQL refused for their data, as permanent failures."""
        failures: list[Failing] = []
        for item, _out, run_time_s, batched_with in finished:
            if item.task_id not in refused:
                continue
            out: Failure = {"ok": False, "error": refused[item.task_id], "retryable": False}
            meta = profile(
                item,
                out,
                worker=self.name,
                run_time_s=run_time_s,
                batched_with=batched_with,
                versions=self.versions,
                result_kind="failed",
            )
            failures.append((item, out, meta, False))
        return failures

    def _refused(self, items: list[InFlight], done: list[Done], settled: list[TaskRow]) -> None:
        """Completions the attempt fence refused: the task was taken over (this worker was
        cut off or frozen past the visibility timeout) or cancelled meanwhile."""
        if len(settled) == len(done):
            return
        kept = {r.task_id for r in settled}
        late = [t for t, *_ in done if t not in kept]
        types = {i.task_id: i.row.task_type for i in items}
        for task_id in late:
            metrics.fence_refused(types[task_id])
        log.warning(
            "dropped %d late completion(s) refused by the attempt fence (taken over or "
            "cancelled meanwhile): %s",
            len(late),
            ", ".join(str(t) for t in late[:5]) + (" ..." if len(late) > 5 else ""),
        )

    async def _fail(
        self, item: InFlight, out: Failure, meta: JsonObject, retry: bool
    ) -> TaskRow | None:
        """A failure written: retried later (with a backoff) or failed for good (a
        retryable one whose retries are exhausted is dead-lettered too). None when the row
        was cancelled or taken over meanwhile: it is someone else's now."""
        error = out["error"]
        if retry:
            delay = backoff_s(
                item.row.retry_count, base_s=self.retry_base_s, cap_s=self.retry_cap_s
            )
            meta["retry_delay_s"] = round(delay, 3)
            row = await self.queue.retry_later(item.row, error, delay, meta, retrying=until_up)
            if row is not None:
                log.info("task %s: %s; retry in %.2f s", item.task_id, error, delay)
            return row
        dead = None
        if out.get("retryable"):
            dead = {**item.msg.encode(), "task_id": item.key, "stream": item.stream}
        row = await self.queue.fail(item.row, error, meta, dead=dead, retrying=until_up)
        if row is not None:
            log.info("task %s failed: %s", item.task_id, error)
        return row


def _count(ended: list[Ended], written: set[uuid.UUID], refused: dict[uuid.UUID, str]) -> None:
    """Each task's outcome into the metrics, as written: a completion the attempt fence
    dropped is not counted (fence_refused counts it); one PostgreSQL refused is a failure."""
    for item, outcome, run_time_s, wait_s in ended:
        if outcome == "completed" and item.task_id not in written:
            if item.task_id not in refused:
                continue  # the attempt fence dropped it (counted by fence_refused)
            outcome = "failed"  # PostgreSQL refused the result: the task failed
        metrics.task_finished(item.row.task_type, outcome, run_time_s, wait_s)
