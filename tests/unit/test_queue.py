"""The queue facade over the in-memory ports (tests/unit/fakes.py): the shared behavioural
cases (tests/queue_cases.py, also run against PostgreSQL + Redis in
tests/integration/test_queue_cases.py), then what only fakes can stage: the order of the
writes, and outages between them."""

from __future__ import annotations

import pytest

from qtaskdist_jupyter.core.broker.keys import PRIORITY_STREAMS
from qtaskdist_jupyter.core.errors import QueueUnavailable
from qtaskdist_jupyter.core.queue import EventPage, TaskEvent, TaskQueue, TaskRow
from tests import queue_cases
from tests.queue_cases import CASES, claimed, new, no_priority, row, submit

from .fakes import FakeBroker, FakeStore


def make() -> tuple[TaskQueue, FakeStore, FakeBroker]:
    store, broker = FakeStore(), FakeBroker()
    return TaskQueue(store, broker), store, broker


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
async def test_case_on_fakes(case: queue_cases.Case) -> None:
    queue, _store, _broker = make()
    await case(queue)


async def test_submit_checks_redis_then_writes_the_row_then_publishes() -> None:
    queue, store, broker = make()
    await submit(queue)
    assert broker.calls[:2] == ["ping", "publish"] and store.calls == ["insert"]


async def test_submit_refuses_before_any_row_when_redis_is_down() -> None:
    queue, store, broker = make()
    broker.down = True
    with pytest.raises(QueueUnavailable):
        await submit(queue)
    assert store.rows == {}


async def test_a_failed_publish_puts_the_rows_back_to_pending() -> None:
    queue, store, broker = make()
    broker.fail_next = {"publish"}
    with pytest.raises(QueueUnavailable):
        await queue.submit("alice", [new(), new()], no_priority, enqueue=True)
    assert [r["status"] for r in store.rows.values()] == ["pending", "pending"]
    assert store.calls == ["insert", "unqueue"]


async def test_a_lost_event_never_undoes_a_pending_submit_a_cancel_or_a_delete() -> None:
    queue, store, broker = make()
    broker.down = True
    tid = await submit(queue, enqueue=False)
    assert (await queue.cancel(tid, "alice"))["status"] == "cancelled"
    await queue.delete(tid, "alice")
    assert store.rows == {}


async def test_a_delete_tells_the_live_tables_to_drop_the_row() -> None:
    queue, _store, _broker = make()
    tid = await submit(queue, enqueue=False)
    await queue.cancel(tid, "alice")
    await queue.delete(tid, "alice")
    page = await queue.events("0-0")
    assert [e.status for e in page.events] == ["pending", "cancelled", "deleted"]


async def test_a_cancel_tells_the_workers() -> None:
    queue, _store, broker = make()
    got, _entry = await claimed(queue)
    await queue.cancel(got.task_id, "alice")
    assert broker.cancels == [str(got.task_id)]


async def test_a_failure_is_written_before_its_dead_letter() -> None:
    queue, store, broker = make()
    got, _entry = await claimed(queue)
    failed = await queue.fail(got, "boom", {"k": 1}, dead={"m": "x"})
    assert failed is not None and failed.status == "failed"
    assert store.calls[-1] == "fail" and broker.calls[-1] == "dead_letter"
    assert broker.dead == [("retries exhausted: boom", {"m": "x"})]


async def test_a_row_that_moved_on_gets_no_dead_letter_and_no_delayed_message() -> None:
    queue, _store, broker = make()
    got, _entry = await claimed(queue)
    await queue.cancel(got.task_id, "alice")
    assert await queue.fail(got, "boom", {}, dead={"m": "x"}) is None
    assert await queue.retry_later(got, "flaky", 1.0, {}) is None
    assert broker.dead == [] and broker.delayed == []


async def test_a_retry_later_writes_the_row_before_its_delayed_message() -> None:
    queue, store, broker = make()
    got, _entry = await claimed(queue)
    broker.fail_next = {"enqueue_later"}
    with pytest.raises(QueueUnavailable):
        await queue.retry_later(got, "flaky", 1.0, {})
    assert store.calls[-1] == "retry later" and (await row(queue, got.task_id)).status == "queued"


async def test_the_started_stamps_go_out_as_started_running_events() -> None:
    queue, _store, broker = make()
    got, _entry = await claimed(queue)
    assert got.claimed_at is not None
    (stamped,) = await queue.started([(got.task_id, 1, got.claimed_at)])
    assert stamped.task_id == got.task_id
    assert await queue.started([(got.task_id, 1, got.claimed_at)]) == []  # stamped once
    events = (await queue.events("0-0")).events
    assert [(e.status, e.started) for e in events] == [("queued", False), ("running", True)]
    assert broker.calls.count("emit") == 1


async def test_an_entry_that_is_no_event_is_skipped_and_read_past() -> None:
    queue, _store, broker = make()
    tid = await submit(queue)
    broker.events.append(("99-0", {"m": "not an event"}))
    page = await queue.events("0-0")
    assert [e.task_id for e in page.events] == [str(tid)] and page.position == "99-0"


def test_an_event_answers_the_wire_keys_without_its_owner() -> None:
    data = {
        "task_id": "t",
        "status": "running",
        "owner": "alice",
        "task_type": "simulate",
        "attempt": 1,
        "batch_id": None,
        "ts": 1.5,
        "started": True,
    }
    event = TaskEvent.from_entry("5-0", data)
    assert event is not None
    assert list(event.to_json().items()) == [
        ("task_id", "t"),
        ("status", "running"),
        ("task_type", "simulate"),
        ("attempt", 1),
        ("batch_id", None),
        ("ts", 1.5),
        ("started", True),
        ("id", "5-0"),
    ]
    assert TaskEvent.from_entry("6-0", {**data, "attempt": "1"}) is None
    assert TaskEvent.from_entry("7-0", None) is None
    assert EventPage((), None).position is None


def test_a_row_is_frozen() -> None:
    got = TaskRow.from_row(
        {"task_id": 1, "task_type": "simulate", "status": "queued", "owner": "alice", "attempt": 0}
    )
    with pytest.raises(AttributeError):
        setattr(got, "status", "running")  # noqa: B010 - a frozen row refuses any write
    assert got.with_meta({"k": 1}).meta_data == {"k": 1} and got.meta_data is None


async def test_insert_without_the_lock_pends_quietly_or_publishes_on_the_lane_asked() -> None:
    queue, store, broker = make()
    broker.down = True  # a pending insert needs no Redis: its event is only for the views
    (pending,) = await queue.insert([new()], enqueue=False)
    assert store.rows[pending["task_id"]]["status"] == "pending"
    broker.down = False
    (small,) = await queue.insert([new()], enqueue=True, priority=True)
    assert small["task_id"].hex in await broker.queued_ids(PRIORITY_STREAMS["simulate"])
    assert broker.calls[-2:] == ["ping", "publish"]


async def test_update_writes_plain_fields_and_no_event() -> None:
    queue, store, broker = make()
    tid = await submit(queue, enqueue=False)
    events = len(broker.events)
    await queue.update(tid, "alice", {"name": "bell"})
    assert store.rows[tid]["name"] == "bell" and len(broker.events) == events
