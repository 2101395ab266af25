"""Behavioural cases of the queue facade, run twice: against the in-memory ports
(tests/unit/test_queue.py) and against PostgreSQL + Redis (tests/integration/
test_queue_cases.py). Each case gets a :class:`TaskQueue` over empty ports and observes
only through the facade and the ports' reads, so the same assertions hold for both."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS, STREAMS
from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.errors import TransitionError
from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from qtaskdist_jupyter.core.store.engine import NewTask

ALL_STREAMS = [*PRIORITY_STREAMS.values(), *STREAMS.values()]
SIM = STREAMS["simulate"]
Case = Callable[[TaskQueue], Awaitable[None]]
CASES: list[Case] = []


def case(fn: Case) -> Case:
    CASES.append(fn)
    return fn


def new(owner: str = "alice") -> NewTask:
    return NewTask("simulate", {"circuit": "OPENQASM 2.0;", "shots": 10}, owner)


def no_priority(_active: int, _stored: int) -> bool:
    return False


async def submit(queue: TaskQueue, *, enqueue: bool = True) -> uuid.UUID:
    (row,) = await queue.submit("alice", [new()], no_priority, enqueue=enqueue)
    return row["task_id"]


async def row(queue: TaskQueue, task_id: uuid.UUID) -> TaskRow:
    return (await queue.rows([task_id]))[task_id]


async def deliver(queue: TaskQueue, consumer: str = "w1") -> list[tuple[str, str, TaskMessage]]:
    """The new entries of every task stream, read as a worker's XREADGROUP reads them."""
    broker: Any = queue.broker  # read is the worker's own call, not the facade's
    await broker.ensure_groups(ALL_STREAMS)
    got = await broker.read(ALL_STREAMS, consumer, count=100, block_ms=1)
    return [(s, eid, TaskMessage.decode(f)) for s, eid, f in got]


async def statuses(queue: TaskQueue, task_id: uuid.UUID) -> list[str]:
    page = await queue.events("0-0")
    return [e.status for e in page.events if e.task_id == str(task_id)]


async def claimed(queue: TaskQueue) -> tuple[TaskRow, tuple[str, str]]:
    """A task submitted, delivered and claimed by w1: its row and its entry."""
    tid = await submit(queue)
    ((stream, eid, msg),) = await deliver(queue)
    (got,) = await queue.claim([(msg.task_id, msg.attempt)], "w1")
    assert got.task_id == tid
    return got, (stream, eid)


@case
async def submit_writes_the_row_then_its_message_and_event(queue: TaskQueue) -> None:
    tid = await submit(queue)
    assert (await row(queue, tid)).status == "queued"
    assert tid.hex in await queue.broker.queued_ids(SIM)
    assert await statuses(queue, tid) == ["queued"]
    # A small submission (decide says so) goes to the priority stream.
    (small,) = await queue.submit("alice", [new()], lambda a, s: True, enqueue=True)
    assert small["task_id"].hex in await queue.broker.queued_ids(PRIORITY_STREAMS["simulate"])


@case
async def a_pending_task_is_enqueued_once(queue: TaskQueue) -> None:
    tid = await submit(queue, enqueue=False)
    assert (await row(queue, tid)).status == "pending"
    assert tid.hex not in await queue.broker.queued_ids(SIM)
    (moved,) = await queue.enqueue([tid])
    assert moved["status"] == "queued" and tid.hex in await queue.broker.queued_ids(SIM)
    assert await queue.enqueue([tid]) == []  # already queued: nothing moves, no message
    assert len(await deliver(queue)) == 1
    assert await statuses(queue, tid) == ["pending", "queued"]


@case
async def a_claim_is_fenced_on_the_messages_attempt(queue: TaskQueue) -> None:
    got, _entry = await claimed(queue)
    assert (got.status, got.attempt) == ("running", 1)
    assert got.payload["shots"] == 10
    assert await queue.claim([(got.task_id, 0)], "w2") == []  # a duplicate delivery


@case
async def a_claim_tried_again_answers_its_own_row_unchanged(queue: TaskQueue) -> None:
    # The first try committed but its answer was lost (the connection dropped): the retry
    # must answer the row, or it stays running with no one holding it.
    got, _entry = await claimed(queue)
    (again,) = await queue.claim([(got.task_id, 0)], "w1")
    assert (again.status, again.attempt, again.claimed_at) == ("running", 1, got.claimed_at)
    await queue.started([(got.task_id, 1, got.claimed_at or datetime.now(UTC))])
    assert await queue.claim([(got.task_id, 0)], "w1") == []  # once its job began: no


@case
async def a_completion_is_committed_then_settled_with_its_ack(queue: TaskQueue) -> None:
    got, entry = await claimed(queue)
    assert await queue.complete_many([(got.task_id, 0, {"x": 1}, {})]) == []  # stale
    (done,) = await queue.complete_many([(got.task_id, 1, {"x": 1}, {"k": 1})])
    assert done.status == "completed"
    await queue.settle([done], [entry])
    assert got.task_id.hex not in await queue.broker.queued_ids(SIM)
    assert await statuses(queue, got.task_id) == ["queued", "completed"]


@case
async def a_retry_later_waits_in_the_delay_set(queue: TaskQueue) -> None:
    got, _entry = await claimed(queue)
    later = await queue.retry_later(got, "flaky", 60.0, {"retry_delay_s": 60.0})
    assert later is not None and (later.status, later.retry_count) == ("queued", 1)
    assert got.task_id.hex in await queue.broker.queued_ids(SIM)  # the delayed message
    assert await queue.claim([(got.task_id, 1)], "w1") == []  # not due yet
    assert await queue.retry_later(got, "flaky", 60.0, {}) is None  # not running any more


@case
async def a_failure_of_a_row_cancelled_meanwhile_writes_nothing(queue: TaskQueue) -> None:
    got, _entry = await claimed(queue)
    assert (await queue.cancel(got.task_id, "alice"))["status"] == "cancelled"
    assert await queue.fail(got, "boom", {}, dead={"m": "x"}) is None
    assert (await row(queue, got.task_id)).status == "cancelled"
    with pytest.raises(TransitionError):
        await queue.cancel(got.task_id, "alice")


@case
async def a_release_requeues_and_a_stale_one_does_nothing(queue: TaskQueue) -> None:
    got, _entry = await claimed(queue)
    (released,) = await queue.release([(got.task_id, 1, {"released_by": "t"}, "test")])
    assert (released.status, released.attempt) == ("queued", 1)
    msgs = [m for _s, _e, m in await deliver(queue)]
    assert [(m.task_id, m.attempt) for m in msgs] == [(got.task_id, 1)]
    (again,) = await queue.claim([(got.task_id, 1)], "w2")
    assert again.attempt == 2
    assert await queue.release([(got.task_id, 1, {}, "stale")]) == []


@case
async def a_lost_message_is_published_again_once(queue: TaskQueue) -> None:
    tid = await submit(queue)
    ((stream, eid, _m),) = await deliver(queue)
    await queue.ack([(stream, eid)])  # the message is gone; the row still says queued
    assert await queue.requeue_lost(ALL_STREAMS, ["simulate"]) == 1
    assert await queue.requeue_lost(ALL_STREAMS, ["simulate"]) == 0
    assert tid.hex in await queue.broker.queued_ids(SIM)


@case
async def only_the_running_attempt_is_taken_over(queue: TaskQueue) -> None:
    got, _entry = await claimed(queue)
    taken = await queue.take_over(got.task_id, 1, "w2")
    assert taken is not None and (taken.status, taken.attempt) == ("running", 2)
    assert await queue.take_over(got.task_id, 1, "w3") is None


@case
async def a_cancelled_task_is_retried_onto_its_stream(queue: TaskQueue) -> None:
    tid = await submit(queue, enqueue=False)
    await queue.cancel(tid, "alice")
    assert (await queue.retry(tid, "alice", lambda active: False))["status"] == "queued"
    assert tid.hex in await queue.broker.queued_ids(SIM)
    assert await statuses(queue, tid) == ["pending", "cancelled", "queued"]


@case
async def the_events_page_moves_past_what_it_read(queue: TaskQueue) -> None:
    start = await queue.last_event_id()
    tid = await submit(queue)
    page = await queue.events(start)
    assert [(e.task_id, e.status, e.owner) for e in page.events] == [(str(tid), "queued", "alice")]
    assert page.position is not None
    assert (await queue.events(page.position)).events == ()


@case
async def a_due_retry_is_promoted_onto_its_stream(queue: TaskQueue) -> None:
    got, _entry = await claimed(queue)
    assert await queue.retry_later(got, "flaky", 0.0, {}) is not None
    assert await queue.promote_due() == 1
    msgs = [m for _s, _e, m in await deliver(queue)]
    assert [(m.task_id, m.attempt) for m in msgs] == [(got.task_id, 1)]
    (again,) = await queue.claim([(got.task_id, 1)], "w1")
    assert (again.attempt, again.retry_count) == (2, 1)
