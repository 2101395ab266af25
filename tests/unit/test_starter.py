"""The worker's start stamps (worker/qtaskdist_worker/starts.py): written in batches, and
taken back by a unit that ends first, whose completion then carries its start."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from qtaskdist_worker.starts import Starter
from qtaskdist_worker.units import InFlight

from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.queue import TaskRow


class _Queue:
    """TaskQueue.started as the Starter sees it: the stamps written, and their events."""

    def __init__(self) -> None:
        self.writes: list[list[tuple[uuid.UUID, int, datetime]]] = []
        self.events: list[uuid.UUID] = []

    async def started(self, starts: list[tuple[uuid.UUID, int, datetime]], retrying: Any) -> list:
        self.writes.append(list(starts))
        self.events += [t for t, _a, _s in starts]
        return []


def _item() -> InFlight:
    tid = uuid.uuid4()
    msg = TaskMessage(tid, "simulate", 1)
    return InFlight("s", "0-1", msg, TaskRow(tid, "simulate", "running", "alice", 1))


def _starter() -> tuple[Starter, _Queue]:
    queue = _Queue()
    return Starter(queue, flush_after_s=0.05), queue  # pyright: ignore[reportArgumentType]


async def test_starts_are_written_in_one_batch_after_the_window() -> None:
    starter, queue = _starter()
    items = [_item() for _ in range(3)]
    starter.add(items[:2])
    starter.add(items[2:])
    assert queue.writes == []
    await asyncio.sleep(0.1)
    assert [[t for t, _a, _s in w] for w in queue.writes] == [[i.task_id for i in items]]
    assert queue.events == [i.task_id for i in items]
    assert all(i.start_written is not None and i.start_written.done() for i in items)


async def test_a_unit_that_ends_first_takes_its_stamps_back() -> None:
    starter, queue = _starter()
    quick, slow = [_item(), _item()], [_item()]
    starter.add(quick + slow)
    starter.withdraw(quick)  # its completion carries the start; it waits for no write
    assert all(i.start_written is None and i.started is not None for i in quick)
    await asyncio.sleep(0.1)
    assert [[t for t, _a, _s in w] for w in queue.writes] == [[slow[0].task_id]]
    assert queue.events == [slow[0].task_id]


async def test_when_every_stamp_is_taken_back_nothing_is_written() -> None:
    starter, queue = _starter()
    items = [_item(), _item()]
    starter.add(items)
    pending = items[0].start_written
    starter.withdraw(items)
    assert pending is not None and pending.done()  # nobody waits on a cancelled batch
    await asyncio.sleep(0.1)
    await starter.close()
    assert queue.writes == [] and queue.events == []


async def test_a_stamp_already_being_written_stays() -> None:
    starter, queue = _starter()
    items = [_item()]
    starter.add(items)
    await asyncio.sleep(0.1)  # the batch went out
    written = items[0].start_written
    starter.withdraw(items)
    assert items[0].start_written is written  # the end still waits for that write
    assert len(queue.writes) == 1
