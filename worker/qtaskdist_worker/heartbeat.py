"""The worker's signs of life, and how it hears that a task it runs was cancelled."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import wait_fixed

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.queue import Upkeep
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.core.store.store import TaskStore

from .inflight import InFlightRegistry
from .retry import on_outage
from .units import HOST


@dataclass
class Heartbeat:
    """Every ``visibility/3``: XCLAIM (justid) the entries in flight so their idle time
    never reaches the visibility timeout while this worker lives, refresh
    ``qtaskdist:workers[name]``, and re-check the rows in flight for a cancellation whose
    ``stream:cancels`` entry was missed (trimmed, flushed, or written during an outage)."""

    store: TaskStore
    upkeep: Upkeep
    inflight: InFlightRegistry
    name: str
    task_types: list[str]
    concurrency: int
    completed: Callable[[], int]
    started: float = field(default_factory=time.time)

    async def beat(self) -> None:
        await self.upkeep.beat(
            self.name,
            self.inflight.entries_by_stream(),
            {
                "host": HOST,
                "pid": os.getpid(),
                "task_types": self.task_types,
                "in_flight": len(self.inflight),
                "started": self.started,
                "concurrency": self.concurrency,
                "completed": self.completed(),
            },
        )
        if self.inflight:
            states = await self.store.status_of(list(self.inflight))
            for tid, (status, attempt) in states.items():
                item = self.inflight.get(tid)
                if item and (status == TaskStatus.CANCELLED or attempt != item.attempt):
                    self.inflight.cancel(item)


@dataclass
class CancelWatch:
    """Tails ``stream:cancels`` (a cancel writes the task id there) and stops the tasks
    in flight that it names."""

    broker: Broker
    inflight: InFlightRegistry
    block_ms: int = 1000
    # After an outage, how long to wait before reading again.
    pause_s: float = 1.0

    async def run(self) -> None:
        """Tail for good. An outage (retry.RETRYABLE) pauses ``pause_s`` and tails on
        from new cancels: the heartbeat's row check covers what the gap hid. Any other
        error ends the watch, and with it the worker (Worker._watch_side_tasks)."""
        await on_outage(wait_fixed(self.pause_s), "cancel watch")(self._tail)

    async def _tail(self) -> None:
        last = "$"
        while True:
            for eid, task_id in await self.broker.read_cancels(last, block_ms=self.block_ms):
                last = eid
                with contextlib.suppress(ValueError):
                    item = self.inflight.get(uuid.UUID(task_id))
                    if item is not None:
                        self.inflight.cancel(item)
