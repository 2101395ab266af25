"""TaskStore and Broker against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.broker.keys import EVENTS_STREAM, STREAMS
from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.errors import QueueUnavailable, TaskNotFound, TransitionError
from qtaskdist_jupyter.core.models import TaskStatus
from qtaskdist_jupyter.core.store.store import NewTask
from tests.fixtures.circuits import BELL_QASM2


def _task(owner: str = "alice", **kw) -> NewTask:
    return NewTask(
        task_type=kw.pop("task_type", "simulate"),
        payload={"circuit": BELL_QASM2, "shots": 100},
        owner=owner,
        **kw,
    )


async def test_streams_mapping_is_exact() -> None:
    assert STREAMS == {
        "simulate": "stream:simulate",
        "c_qir_convert": "stream:c_qir",
        "backend_run": "stream:backend",
    }


async def test_bulk_create_and_enqueue_writes_exactly_n(service, sync_redis) -> None:
    n = 2500
    batch = uuid.uuid4()
    rows = await service.create([_task(batch_id=batch) for _ in range(n)], enqueue=True)
    assert len(rows) == n
    counts = await service.store.counts(owner="alice")
    assert counts["queued"] == n and sum(counts.values()) == n
    assert sync_redis.xlen("stream:simulate") == n
    ids = {TaskMessage.decode(f).task_id for _e, f in sync_redis.xrange("stream:simulate")}
    assert ids == {r["task_id"] for r in rows}
    # Every status change is an event: pending→queued for each row.
    assert sync_redis.xlen(EVENTS_STREAM) == n


async def test_claim_complete_fenced_by_attempt(service) -> None:
    store = service.store
    (row,) = await service.create([_task()], enqueue=True)
    tid = row["task_id"]
    claimed = await store.claim_many([(tid, 0)], worker="w1")
    assert [c["attempt"] for c in claimed] == [1]
    # A duplicate delivery of the same message claims nothing.
    assert await store.claim_many([(tid, 0)], worker="w2") == []
    # A stale attempt cannot complete it and says why.
    with pytest.raises(TransitionError, match="stale"):
        await store.complete(tid, 0, {"counts": {}}, {})
    done = await store.complete(tid, 1, {"counts": {"00": 1}}, {"worker": "w1"})
    assert done["status"] == TaskStatus.COMPLETED
    # A finished task cannot be completed again, failed or cancelled.
    with pytest.raises(TransitionError, match="completed"):
        await store.complete(tid, 1, {"counts": {}}, {})
    with pytest.raises(TransitionError):
        await store.cancel(tid, "alice")
    got = await store.get(tid)
    assert got["result"] == {"counts": {"00": 1}} and got["attempt"] == 1


async def test_complete_many_skips_stale(service) -> None:
    store = service.store
    rows = await service.create([_task() for _ in range(3)], enqueue=True)
    ids = [r["task_id"] for r in rows]
    await store.claim_many([(t, 0) for t in ids], worker="w")
    done = await store.complete_many(
        [(ids[0], 1, {"v": 0}, {}), (ids[1], 7, {"v": 1}, {}), (ids[2], 1, {"v": 2}, {})]
    )
    assert {d["task_id"] for d in done} == {ids[0], ids[2]}
    assert (await store.get(ids[1]))["status"] == "running"


def _ended(started: datetime) -> dict:
    """An attempt's end as the worker writes it: its entry carries its job's start."""
    return {"attempts": [{"attempt": 1, "started_at": started.isoformat()}]}


async def test_a_completion_written_before_its_start_keeps_the_jobs_start(service) -> None:
    store = service.store
    rows = await service.create([_task() for _ in range(3)], enqueue=True)
    ids = [r["task_id"] for r in rows]
    await store.claim_many([(t, 0) for t in ids], worker="w")
    job_start = datetime.now(UTC) - timedelta(seconds=16)
    # ids[0]: its start was stamped first; ids[1] / ids[2]: the completion (or the
    # failure) raced ahead of the batch that stamps the start.
    await store.mark_started([(ids[0], 1, job_start - timedelta(seconds=1))])
    await store.complete_many([(t, 1, {"v": 0}, _ended(job_start)) for t in ids[:2]])
    await store.fail(ids[2], 1, "boom", _ended(job_start))
    # The late start write finds them finished: it changes nothing, emits nothing.
    late = datetime.now(UTC)
    assert await store.mark_started([(t, 1, late) for t in ids]) == []
    got = {t: await store.get(t) for t in ids}
    assert got[ids[0]]["started_at"] == job_start - timedelta(seconds=1)
    assert got[ids[1]]["started_at"] == job_start and got[ids[1]]["status"] == "completed"
    assert got[ids[2]]["started_at"] == job_start and got[ids[2]]["status"] == "failed"


async def test_a_start_write_never_restamps_or_touches_another_attempt(service) -> None:
    store = service.store
    (row,) = await service.create([_task()], enqueue=True)
    tid = row["task_id"]
    await store.claim_many([(tid, 0)], worker="w")
    first = datetime.now(UTC) - timedelta(seconds=5)
    assert len(await store.mark_started([(tid, 1, first)])) == 1
    assert await store.mark_started([(tid, 1, datetime.now(UTC))]) == []
    assert await store.mark_started([(tid, 2, datetime.now(UTC))]) == []
    got = await store.get(tid)
    assert got["started_at"] == first and got["status"] == "running" and got["attempt"] == 1


async def test_retry_later_sets_backoff_and_count(service) -> None:
    store = service.store
    (row,) = await service.create([_task()], enqueue=True)
    tid = row["task_id"]
    await store.claim_many([(tid, 0)], worker="w")
    moved = await store.retry_later(tid, 1, "connection reset", 30.0, {})
    assert moved["status"] == "queued" and moved["retry_count"] == 1
    got = await store.get(tid)
    assert (got["scheduled_for"] - got["updated_at"]).total_seconds() == pytest.approx(30, abs=1)
    # Not claimable before its time.
    assert await store.claim_many([(tid, 1)], worker="w") == []


async def test_owner_isolation_and_not_found(service) -> None:
    (row,) = await service.create([_task(owner="alice")], enqueue=False)
    with pytest.raises(TaskNotFound):
        await service.store.get(row["task_id"], owner="bob")
    with pytest.raises(TaskNotFound):
        await service.cancel(row["task_id"], owner="bob")
    assert (await service.store.get(row["task_id"], owner="alice"))["status"] == "pending"


async def test_keyset_pagination_covers_all_once(service) -> None:
    await service.create([_task(name=f"t{i}") for i in range(25)], enqueue=False)
    seen, cursor = [], None
    while True:
        page, cursor = await service.store.list(owner="alice", limit=10, cursor=cursor)
        seen += [r["task_id"] for r in page]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25


async def test_enqueue_with_redis_down_writes_nothing(settings) -> None:
    from qtaskdist_server.api.service import TaskService

    from qtaskdist_jupyter.core.store.store import TaskStore

    store = TaskStore.from_url(settings.database_url)
    dead = Broker.from_url("redis://127.0.0.1:1/0")
    svc = TaskService(store, dead, settings)
    try:
        with pytest.raises(QueueUnavailable, match="Redis unreachable"):
            await svc.create([_task()], enqueue=True)
        assert sum((await store.counts(owner=None)).values()) == 0
    finally:
        await svc.close()


async def test_concurrent_claims_only_one_wins(service) -> None:
    (row,) = await service.create([_task()], enqueue=True)
    got = await asyncio.gather(
        *[service.store.claim_many([(row["task_id"], 0)], worker=f"w{i}") for i in range(8)]
    )
    assert sum(len(g) for g in got) == 1


async def test_check_schema_names_the_fix_on_an_unmigrated_database() -> None:
    from qtaskdist_jupyter.core.errors import ConfigError
    from qtaskdist_jupyter.core.store.store import TaskStore
    from tests.fixtures.services import admin, database_url_for

    name = f"qtd_empty_{uuid.uuid4().hex[:10]}"
    with admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    store = TaskStore.from_url(database_url_for(name))
    try:
        with pytest.raises(ConfigError, match="qtaskdist db upgrade"):
            await store.check_schema()
    finally:
        await store.close()
        with admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _kill_pooled_backends(store) -> None:
    """Terminate the server side of every connection the store's pool holds."""
    from sqlalchemy import text

    from tests.fixtures.services import admin as _admin

    async with store.engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    with _admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_pooled_connection_killed_while_idle_is_replaced_unseen(
    database_url, monkeypatch
) -> None:
    from qtaskdist_jupyter.core.store import engine as db
    from qtaskdist_jupyter.core.store.store import TaskStore

    monkeypatch.setattr(db, "PING_IF_IDLE_S", 0.05)
    store = TaskStore.from_url(database_url, pool_size=1)
    try:
        await _kill_pooled_backends(store)
        await asyncio.sleep(0.2)  # idle past the window: the checkout tests it first
        with pytest.raises(TaskNotFound):  # i.e. the statement ran, on a new connection
            await store.get(uuid.uuid4())
    finally:
        await store.close()


async def test_a_pooled_connection_killed_while_busy_fails_once(database_url) -> None:
    """Inside the idle window there is no test at checkout: one call reports the lost
    connection (the worker retries it; the API answers 503) and the pool is renewed."""
    from qtaskdist_jupyter.core.errors import DatabaseUnavailable
    from qtaskdist_jupyter.core.store.store import TaskStore

    store = TaskStore.from_url(database_url, pool_size=1)
    try:
        await _kill_pooled_backends(store)
        with pytest.raises(DatabaseUnavailable, match="database"):
            await store.get(uuid.uuid4())
        with pytest.raises(TaskNotFound):
            await store.get(uuid.uuid4())
    finally:
        await store.close()


async def test_publish_mixes_streams_owners_and_statuses_in_one_call(service, sync_redis) -> None:
    """Rows of different kinds share one script call; each gets its own message and event,
    and JSON-special characters in an owner survive the shared tails."""
    batch = uuid.uuid4()
    rows = [
        {"task_id": uuid.uuid4(), "task_type": t, "status": "queued", "owner": o,
         "attempt": a, "batch_id": b}
        for t, o, a, b in [
            ("simulate", 'bob "the" \\ builder ü', 0, batch),
            ("c_qir_convert", "alice", 2, None),
            ("simulate", "alice", 0, batch),
            ("backend_run", "alice", 1, None),
        ]
    ]  # fmt: skip
    await service.broker.publish(rows)
    for t, stream in STREAMS.items():
        got = [TaskMessage.decode(f) for _id, f in sync_redis.xrange(stream)]
        want = [TaskMessage(r["task_id"], t, r["attempt"]) for r in rows if r["task_type"] == t]
        assert got == want
    events = [json.loads(f["m"]) for _id, f in sync_redis.xrange(EVENTS_STREAM)]
    assert [
        (e["task_id"], e["status"], e["owner"], e["task_type"], e["attempt"], e["batch_id"])
        for e in events
    ] == [
        (str(r["task_id"]), "queued", r["owner"], r["task_type"], r["attempt"],
         str(r["batch_id"]) if r["batch_id"] else None)
        for r in rows
    ]  # fmt: skip
    await service.broker.emit([{**rows[1], "status": "running"}])
    assert sync_redis.xlen(STREAMS["c_qir_convert"]) == 1  # an event only, no message
    assert json.loads(sync_redis.xrevrange(EVENTS_STREAM, count=1)[0][1]["m"])["status"] == (
        "running"
    )
