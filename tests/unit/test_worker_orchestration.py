"""The worker's orchestration over the queue facade and the in-memory ports: how the
Finisher settles a batch, what the Autoclaimer does with an abandoned entry, what a
reconciler pass repairs, and the Dispatcher's writes (a provider job's id, a task
cancelled while it ran). No services, no job processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from qtaskdist_worker.autoclaim import Autoclaimer
from qtaskdist_worker.dispatch import Dispatcher, DispatchOptions
from qtaskdist_worker.inflight import InFlightRegistry
from qtaskdist_worker.reconciler import reconcile
from qtaskdist_worker.settle import Finisher
from qtaskdist_worker.units import InFlight

from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from tests.queue_cases import ALL_STREAMS, SIM, claimed, deliver, row, statuses, submit

from .fakes import FakeBroker, FakeStore


def make() -> tuple[TaskQueue, FakeStore, FakeBroker]:
    store, broker = FakeStore(), FakeBroker()
    return TaskQueue(store, broker), store, broker


async def in_flight(queue: TaskQueue, inflight: InFlightRegistry) -> InFlight:
    """A task claimed by w1 and registered as its in-flight task."""
    got, (stream, eid) = await claimed(queue)
    msg = TaskMessage(got.task_id, got.task_type, got.attempt - 1)
    item = InFlight(stream, eid, msg, got)
    inflight.add(item)
    return item


def finisher(queue: TaskQueue, inflight: InFlightRegistry) -> Finisher:
    return Finisher(queue, inflight, "w1", retry_base_s=5.0, retry_cap_s=60.0)


# ---- Finisher ------------------------------------------------------------------------


async def test_a_completion_is_written_then_its_event_goes_with_its_ack() -> None:
    queue, store, broker = make()
    inflight = InFlightRegistry()
    item = await in_flight(queue, inflight)
    fin = finisher(queue, inflight)
    await fin.finish([(item, {"ok": True, "result": {"counts": {"00": 5}}}, 0.01, 1)])
    assert store.rows[item.task_id]["status"] == "completed"
    assert store.rows[item.task_id]["result"] == {"counts": {"00": 5}}
    assert broker.calls[-1] == "settle" and store.calls[-1] == "complete"
    assert item.task_id.hex not in await broker.queued_ids(SIM)  # acked
    assert await statuses(queue, item.task_id) == ["queued", "completed"]
    assert len(inflight) == 0 and fin.completed == 1


async def test_a_retryable_failure_with_retries_left_comes_back_later() -> None:
    queue, store, broker = make()
    inflight = InFlightRegistry()
    item = await in_flight(queue, inflight)
    out = {"ok": False, "error": "flaky", "retryable": True}
    await finisher(queue, inflight).finish([(item, out, 0.01, 1)])
    got = await row(queue, item.task_id)
    assert (got.status, got.retry_count) == ("queued", 1)
    ((_stream, msg, _at),) = broker.delayed
    assert (msg.task_id, msg.attempt) == (item.task_id, 1) and broker.dead == []
    assert 0 < (got.meta_data or {})["retry_delay_s"] <= 60.0


async def test_a_retryable_failure_past_its_retries_fails_and_is_dead_lettered() -> None:
    queue, store, broker = make()
    inflight = InFlightRegistry()
    item = await in_flight(queue, inflight)
    store.rows[item.task_id]["max_retries"] = 0
    item.row = TaskRow.from_row(store.rows[item.task_id])
    out = {"ok": False, "error": "flaky", "retryable": True}
    await finisher(queue, inflight).finish([(item, out, 0.01, 1)])
    assert store.rows[item.task_id]["status"] == "failed"
    ((reason, fields),) = broker.dead
    assert reason == "retries exhausted: flaky" and fields["task_id"] == str(item.task_id)
    assert broker.delayed == []


async def test_a_completion_after_a_take_over_is_dropped_but_its_entry_acked() -> None:
    queue, store, broker = make()
    inflight = InFlightRegistry()
    item = await in_flight(queue, inflight)
    await queue.take_over(item.task_id, 1, "w2")
    await finisher(queue, inflight).finish([(item, {"ok": True, "result": {}}, 0.01, 1)])
    assert (store.rows[item.task_id]["status"], store.rows[item.task_id]["attempt"]) == (
        "running",
        2,
    )
    assert "completed" not in await statuses(queue, item.task_id)
    assert item.task_id.hex not in await broker.queued_ids(SIM)


# ---- Autoclaimer ---------------------------------------------------------------------


def age(broker: FakeBroker, seconds: float) -> None:
    """Every delivered entry as if delivered ``seconds`` ago."""
    for eid, (consumer, at) in broker.delivered.items():
        broker.delivered[eid] = (consumer, at - seconds)


class Started:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], list[TaskRow], list[tuple[str, str]]]] = []

    async def __call__(self, msgs: Any, rows: Any, acks: Any, dead: Any) -> None:
        self.calls.append((msgs, rows, acks))


def autoclaimer(queue: TaskQueue, started: Started) -> Autoclaimer:
    return Autoclaimer(
        queue,
        InFlightRegistry(),
        "w2",
        visibility_timeout_s=30.0,
        batch_size=10,
        stopping=asyncio.Event(),
        readable=lambda: list(ALL_STREAMS),
        start=started,
    )


async def test_a_running_task_of_a_silent_worker_is_taken_over() -> None:
    queue, store, broker = make()
    got, _entry = await claimed(queue)  # w1 never heartbeats
    age(broker, 31)
    started = Started()
    await autoclaimer(queue, started).run_once()
    ((_msgs, rows, acks),) = started.calls
    assert [(r.task_id, r.attempt) for r in rows] == [(got.task_id, 2)] and acks == []
    assert store.rows[got.task_id]["worker"] == "w2"


async def test_a_running_task_of_a_live_worker_is_left_alone() -> None:
    queue, store, broker = make()
    got, _entry = await claimed(queue)
    broker.beats["w1"] = {"ts": time.time()}
    age(broker, 31)
    started = Started()
    await autoclaimer(queue, started).run_once()
    assert started.calls == [([], [], [])]
    assert (store.rows[got.task_id]["worker"], store.rows[got.task_id]["attempt"]) == ("w1", 1)


async def test_an_unclaimed_entry_is_claimed_and_a_finished_ones_acked() -> None:
    queue, store, broker = make()
    done, (stream, eid) = await claimed(queue)
    waiting = await submit(queue)
    await deliver(queue)  # to w1, which never claims it
    store.rows[done.task_id]["status"] = "completed"
    age(broker, 31)
    started = Started()
    await autoclaimer(queue, started).run_once()
    ((msgs, rows, acks),) = started.calls
    assert [(r.task_id, r.attempt) for r in rows] == [(waiting, 1)]
    assert acks == [(stream, eid)] and len(msgs) == 1


async def test_nothing_is_idle_before_the_visibility_timeout() -> None:
    queue, _store, _broker = make()
    await claimed(queue)
    started = Started()
    await autoclaimer(queue, started).run_once()
    assert started.calls == []


# ---- reconcile -----------------------------------------------------------------------


async def test_a_pass_releases_orphans_and_republishes_lost_messages() -> None:
    queue, store, broker = make()
    orphan, _entry = await claimed(queue)  # its worker w1 is not alive
    lost = await submit(queue)
    ((stream, eid, _m),) = await deliver(queue)
    await queue.ack([(stream, eid)])
    done = await reconcile(queue, ["simulate"], stale_after_s=30, force=True)
    assert done == {"requeued": 1, "released": 1}
    assert store.rows[orphan.task_id]["status"] == "queued"
    assert store.rows[orphan.task_id]["meta_data"]["released_by"] == "reconciler"
    held = await broker.queued_ids(SIM)
    assert {orphan.task_id.hex, lost.hex} <= held


async def test_a_pass_leaves_what_the_caller_runs_and_other_task_types() -> None:
    queue, store, broker = make()
    mine, _entry = await claimed(queue)
    done = await reconcile(
        queue, ["simulate"], stale_after_s=30, force=True, me="w1", mine={mine.task_id}
    )
    assert done == {"requeued": 0, "released": 0}
    other = await reconcile(queue, ["backend_run"], stale_after_s=30, force=True)
    assert other == {"requeued": 0, "released": 0}
    assert store.rows[mine.task_id]["status"] == "running"


# ---- Dispatcher (without job processes) ----------------------------------------------


def dispatcher(queue: TaskQueue, inflight: InFlightRegistry) -> Dispatcher:
    opts = DispatchOptions(
        batch_size=8, concurrency=1, threads_per_job=1, backend_concurrency=1, poll_interval_s=1
    )
    return Dispatcher(queue, inflight, finisher(queue, inflight), Limits(), opts, cap_s=60.0)


async def test_a_provider_job_id_goes_into_the_row_and_the_task_in_flight() -> None:
    queue, store, _broker = make()
    inflight = InFlightRegistry()
    item = await in_flight(queue, inflight)
    await dispatcher(queue, inflight)._annotate(item, {"provider_job": {"id": "j1"}})
    assert store.rows[item.task_id]["meta_data"]["provider_job"] == {"id": "j1"}
    assert (item.row.meta_data or {})["provider_job"] == {"id": "j1"}


async def test_a_task_cancelled_while_it_ran_is_only_acked() -> None:
    queue, store, broker = make()
    inflight = InFlightRegistry()
    item = await in_flight(queue, inflight)
    await queue.cancel(item.task_id, "alice")
    events = len(broker.events)
    await dispatcher(queue, inflight)._drop([item])
    assert len(inflight) == 0 and item.task_id.hex not in await broker.queued_ids(SIM)
    assert len(broker.events) == events and store.rows[item.task_id]["status"] == "cancelled"
