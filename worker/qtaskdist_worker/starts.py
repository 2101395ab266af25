"""Stamping when a claimed task's job begins.

A worker claims more tasks than its job processes run at once (a read's worth per process
plus prefetch, see dispatch.PREFETCH_BATCHES): a claimed task is ``running`` in the row
but waits behind the others until its unit reaches a job process. Its ``started_at`` is
that moment, so its run time counts from it and its queue wait up to it. The stamps of
the whole worker go out together, one UPDATE and one events call per ``flush_after_s``;
each stamped task gets a ``running`` event with ``"started": true``. A unit that ends
before its stamps went out takes them back (``withdraw``): its outcome's write carries
its start (core/task_times.py), so a quick task costs no start write and no start event,
and its completion never waits for the timer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from qtaskdist_jupyter.core.queue import TaskQueue

from .retry import until_up
from .units import InFlight

log = logging.getLogger("qtaskdist_worker")


class Starter:
    """Collects the tasks whose job began and writes their start in batches."""

    def __init__(self, queue: TaskQueue, flush_after_s: float) -> None:
        self.queue = queue
        self.flush_after_s = flush_after_s
        self.waiting: list[InFlight] = []
        self.written: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.flushes: set[asyncio.Task[None]] = set()

    def add(self, items: list[InFlight]) -> None:
        """These tasks' job begins now; the write follows within ``flush_after_s``."""
        now = datetime.now(UTC)
        loop = asyncio.get_running_loop()
        if self.written is None:
            self.written = loop.create_future()
            self.timer = loop.call_later(self.flush_after_s, self._flush_in_background)
        for item in items:
            item.started = now
            item.start_written = self.written
        self.waiting += items

    def withdraw(self, items: list[InFlight]) -> None:
        """These tasks ended before their stamps went out: their outcome's write carries
        the start instead (``COALESCE(started_at, <carried start>)``), so they leave the
        batch and their end waits for no start write. A stamp already being written stays
        (the end then waits for it, see settle._after_their_running_events)."""
        pending = self.written
        leaving = {id(i) for i in items if i.start_written is pending and pending is not None}
        if not leaving:
            return
        for i in items:
            if id(i) in leaving:
                i.start_written = None
        self.waiting = [i for i in self.waiting if id(i) not in leaving]
        if not self.waiting and pending is not None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.written = None
            pending.set_result(None)

    def _flush_in_background(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.waiting = self.waiting, []
        written, self.written = self.written, None
        task = asyncio.ensure_future(self._write(batch, written))
        self.flushes.add(task)
        task.add_done_callback(self.flushes.discard)

    async def _write(self, batch: list[InFlight], written: asyncio.Future[None] | None) -> None:
        try:
            # The claim's running event goes first (Worker.start), then this one.
            announced = {i.announced for i in batch if i.announced is not None}
            if announced:
                await asyncio.wait(announced)
            starts = [(i.task_id, i.attempt, i.started) for i in batch if i.started]
            await self.queue.started(starts, retrying=until_up)
        except Exception:  # noqa: BLE001 - a lost stamp costs a time shown, never a task
            log.exception("could not record the start of %d task(s)", len(batch))
        finally:
            if written is not None and not written.done():
                written.set_result(None)

    async def close(self) -> None:
        """Write what waits, and wait for the writes under way."""
        if self.waiting:
            self._flush_in_background()
        if self.flushes:
            await asyncio.gather(*self.flushes, return_exceptions=True)
