"""Outages and dead workers, with real worker processes against real PostgreSQL, Redis and Aer.

A database or Redis outage is made honestly without stopping the shared servers: the worker
reaches the service through a small TCP proxy in the test, and the "outage" closes the
proxy's listening socket and cuts every proxied connection, then listens again on the same
port a few seconds later. The test itself talks to the services directly, so it sees the
truth while the worker sees nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.engine import make_url

from qtaskdist_jupyter.core.broker.keys import WORKERS_KEY
from qtaskdist_jupyter.core.broker.wire import TaskMessage
from qtaskdist_jupyter.core.errors import TransitionError
from tests.fixtures.circuits import BELL_QASM2
from tests.fixtures.workers import (
    completion_events,
    heavy_payload,
    kill_tree,
    rows,
    start_worker,
    submit,
    wait_until,
)
from tests.fixtures.workers import stop as stop_worker

OUTAGE_S = 3.0


class TcpProxy:
    """127.0.0.1:<port> → 127.0.0.1:<target>, served by its own event loop in a thread (so
    the worker's traffic never waits on the test's loop)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut = 0  # connections killed by outages
        self._conns: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> int:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        n = len(self._conns)
        for w in list(self._conns):
            w.transport.abort()  # RST: the peer sees the connection die mid-stream
        self._conns.clear()
        return n

    def down(self) -> None:
        """Unreachable from now on: refused connects, every open connection reset."""
        self.cut += self._call(self._cut())

    def up(self) -> None:
        self._call(self._listen())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._conns |= {writer, up_w}
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        self._conns -= {writer, up_w}

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()


@pytest.fixture
def pg_proxy(database_url: str) -> Any:
    proxy = TcpProxy(make_url(database_url).port or 5432).start()
    yield proxy
    proxy.close()


@pytest.fixture
def redis_proxy(redis_url: str) -> Any:
    proxy = TcpProxy(urlsplit(redis_url).port or 6379).start()
    yield proxy
    proxy.close()


def _via_proxy_db(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _via_proxy_redis(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def _count(service: Any, status: str) -> int:
    return (await service.store.counts(owner=None))[status]


def _assert_each_ran_once(got: list[dict[str, Any]], worker: str) -> None:
    for r in got:
        assert r["status"] == "completed", r
        # attempt 1: no task was released, taken over or claimed a second time.
        assert r["attempt"] == 1 and r["worker"] == worker, r
        history = r["meta_data"]["attempts"]
        assert [(a["attempt"], a["outcome"]) for a in history] == [(1, "completed")], history


async def _run_through_outage(
    service: Any, settings: Any, proxy: TcpProxy, env: dict[str, str], log: Path, name: str
) -> tuple[list[uuid.UUID], dict[str, int]]:
    """Start a worker on slow-ish tasks, cut the proxy mid-run, bring it back, and wait for
    every task to complete. Returns the ids and what was seen while the service was down."""
    # Seeded, so each runs alone: one DB/Redis round trip per task, and ~0.2 s of Aer each.
    ids = await submit(service, "simulate", [heavy_payload(1, seed=i) for i in range(24)])
    w = start_worker(
        settings, "--name", name, "--task-types", "simulate", "--batch-size", "1",
        env=env, log=log,
    )  # fmt: skip
    seen: dict[str, int] = {}
    try:
        await wait_until(lambda: _at_least(service, 3), timeout=60, every=0.05)
        proxy.down()
        seen["completed_at_cut"] = await _count(service, "completed")
        await asyncio.sleep(OUTAGE_S)
        seen["completed_before_up"] = await _count(service, "completed")
        assert w.poll() is None, "the worker died during the outage"
        proxy.up()
        await wait_until(lambda: _at_least(service, len(ids)), timeout=60)
        assert w.poll() is None, "the worker died after the outage"
        assert stop_worker(w) == 0
    finally:
        kill_tree(w)
    return ids, seen


async def _at_least(service: Any, n: int) -> bool:
    return await _count(service, "completed") >= n


async def test_database_outage_mid_run_loses_nothing(
    service, settings, sync_redis, pg_proxy, tmp_path
) -> None:
    env = {"DATABASE_URL": _via_proxy_db(str(settings.database_url), pg_proxy.port)}
    log = tmp_path / "w.log"
    ids, seen = await _run_through_outage(service, settings, pg_proxy, env, log, "steady")
    text = log.read_text()
    assert pg_proxy.cut > 0, "the outage cut no live connection"
    # Nothing can reach the database through the proxy while it is down.
    assert seen["completed_at_cut"] == seen["completed_before_up"] < len(ids)
    assert "database" in text and "retrying" in text, text[-3000:]
    _assert_each_ran_once(await rows(service, ids), "steady")
    for tid in ids:
        # A completion whose commit reply the cut swallowed is retried as a no-op, so an
        # event can be missing but never doubled.
        assert len(completion_events(sync_redis, tid)) <= 1
    assert await _count(service, "running") == 0
    assert sync_redis.xlen("stream:simulate") == 0  # every entry acked and deleted


async def test_redis_outage_mid_run_loses_nothing(
    service, settings, sync_redis, redis_proxy, tmp_path
) -> None:
    env = {"REDIS_URL": _via_proxy_redis(str(settings.redis_url), redis_proxy.port)}
    log = tmp_path / "w.log"
    ids, _seen = await _run_through_outage(service, settings, redis_proxy, env, log, "steady")
    text = log.read_text()
    assert redis_proxy.cut > 0, "the outage cut no live connection"
    assert "Redis unreachable" in text, text[-3000:]
    _assert_each_ran_once(await rows(service, ids), "steady")
    for tid in ids:
        assert len(completion_events(sync_redis, tid)) >= 1
    assert await _count(service, "running") == 0
    assert sync_redis.xlen("stream:simulate") == 0


def _entry_of(sync_redis: Any, tid: uuid.UUID) -> str:
    for eid, fields in sync_redis.xrange("stream:simulate"):
        if TaskMessage.decode(fields).task_id == tid:
            return eid
    raise AssertionError(f"no stream entry for {tid}")


async def test_reconciler_releases_dead_workers_rows_and_requeues_lost_ones(
    service, settings, sync_redis, tmp_path
) -> None:
    ghosted, lost, normal = await submit(
        service, "simulate", [{"circuit": BELL_QASM2, "shots": 10, "seed": i} for i in range(3)]
    )
    # Take both entries away, so XAUTOCLAIM has nothing to rescue: only the reconciler,
    # which reads the rows, can bring these tasks back.
    sync_redis.xdel("stream:simulate", _entry_of(sync_redis, ghosted), _entry_of(sync_redis, lost))
    (claimed,) = await service.store.claim_many([(ghosted, 0)], worker="ghost")
    assert claimed["status"] == "running" and claimed["attempt"] == 1

    # The ghost heartbeats until we stop it: while it does, its row is not the reconciler's.
    ghost_alive = True

    async def haunt() -> None:
        while ghost_alive:
            sync_redis.hset(WORKERS_KEY, "ghost", json.dumps({"ts": time.time()}))
            await asyncio.sleep(0.2)

    haunting = asyncio.create_task(haunt())
    w = start_worker(
        settings, "--burst", "--name", "living", "--task-types", "simulate",
        "--reconcile-interval-s", "0.5", "--visibility-timeout-s", "1.5",
        log=tmp_path / "w.log",
    )  # fmt: skip
    try:

        async def done(*tids: uuid.UUID) -> bool:
            return all(r["status"] == "completed" for r in await rows(service, list(tids)))

        await wait_until(lambda: done(lost, normal), timeout=60)
        await asyncio.sleep(2.0)  # several reconciler passes while the ghost still lives
        row = await service.store.get(ghosted)
        assert (row["status"], row["worker"], row["attempt"]) == ("running", "ghost", 1)

        ghost_alive = False
        await haunting
        stopped = time.monotonic()
        # Stale after the 1.5 s visibility timeout, released at the next 0.5 s pass.
        await wait_until(lambda: done(ghosted), timeout=30)
        took = time.monotonic() - stopped
        assert w.wait(timeout=60) == 0
    finally:
        ghost_alive = False
        with contextlib.suppress(BaseException):
            await haunting
        kill_tree(w)
    assert took < 6.0, f"released {took:.1f} s after the last heartbeat"

    row = await service.store.get(ghosted)
    assert row["status"] == "completed" and row["worker"] == "living"
    assert row["attempt"] == 2
    assert row["meta_data"]["released_by"] == "reconciler"
    assert row["meta_data"]["dead_worker"] == "ghost"
    # The ghost's attempt 1 never finished: the release wrote its entry, the worker its own.
    history = row["meta_data"]["attempts"]
    assert [(a["attempt"], a["worker"], a["outcome"]) for a in history] == [
        (1, "ghost", "released"), (2, "living", "completed")
    ]  # fmt: skip
    assert history[0]["error"] == "worker ghost stopped heartbeating"
    # The ghost claimed it and never began its job; the living worker's job began.
    assert history[0]["started_at"] is None
    assert history[0]["claimed_at"] <= history[0]["finished_at"] <= history[1]["started_at"]
    with pytest.raises(TransitionError):
        await service.store.complete(ghosted, 1, {"counts": {"00": 10}}, {})
    assert len(completion_events(sync_redis, ghosted)) == 1

    got = {r["task_id"]: r for r in await rows(service, [lost, normal])}
    assert got[lost]["status"] == "completed" and got[lost]["attempt"] == 1
    assert got[normal]["status"] == "completed" and got[normal]["attempt"] == 1
    assert await _count(service, "running") == 0
    assert sync_redis.xlen("stream:simulate") == 0


def test_a_stream_of_the_wrong_type_stops_the_worker_loudly(settings, sync_redis, tmp_path) -> None:
    # A data error is not an outage: a stream key replaced by a string answers WRONGTYPE
    # to every read, so the read loop must end the worker with that error, not back off
    # and read again for good (it caught any RedisError until 2026-12-07).
    log = tmp_path / "w.log"
    proc = start_worker(settings, "--task-types", "simulate", log=log)
    try:
        deadline = time.monotonic() + 60
        while not sync_redis.exists(WORKERS_KEY) and time.monotonic() < deadline:
            time.sleep(0.1)  # its first heartbeat: the read loop starts right after
        time.sleep(1.0)
        sync_redis.delete("stream:simulate")
        sync_redis.set("stream:simulate", "not a stream")
        rc = proc.wait(timeout=30)
    finally:
        kill_tree(proc)
    text = log.read_text()
    assert rc != 0, text[-3000:]
    assert "WRONGTYPE" in text, text[-3000:]
