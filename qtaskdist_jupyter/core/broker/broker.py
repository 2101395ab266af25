"""Broker: every Redis command qtaskdist runs (streams, events, delays, heartbeats)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from qtaskdist_jupyter.core.broker.keys import (
    CANCELS_STREAM,
    DEAD_STREAM,
    DELAYED_KEY,
    EVENTS_STREAM,
    GC_LOCK_KEY,
    GROUP,
    PRIORITY_STREAMS,
    RECONCILE_LOCK_KEY,
    STREAMS,
    WORKERS_KEY,
)
from qtaskdist_jupyter.core.broker.packing import PUBLISH_KEYS, pack_rows
from qtaskdist_jupyter.core.broker.wire import (
    FIELD,
    EventFields,
    TaskMessage,
    WorkerBeat,
    decode_event_or_none,
)
from qtaskdist_jupyter.core.error_map import maps_errors
from qtaskdist_jupyter.core.errors import QueueUnavailable
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.metrics import CountingRetry


def _lua(name: str) -> str:
    """The text of one of the scripts in lua/ (package data, shipped in the wheel)."""
    path = resources.files("qtaskdist_jupyter.core.broker").joinpath("lua", name)
    return path.read_text(encoding="utf-8")


# Due retries onto their streams (lua/promote.lua).
PROMOTE_LUA = _lua("promote.lua")
# Many rows' task messages and events, and acks, in one call (lua/publish.lua, packing.py).
PUBLISH_LUA = _lua("publish.lua")


# A command that meets a dropped pooled connection (ConnectionError / TimeoutError) is sent
# again on a fresh one this many times, with jittered exponential backoff, before the
# error reaches the caller as "Redis unreachable": a healthy Redis answers the first retry.
REDIS_RETRIES = 2
REDIS_BACKOFF_BASE_S = 0.05
REDIS_BACKOFF_CAP_S = 0.8
# No socket timeout on the clients (as before): a socket-timeout context around a command
# that gets cancelled (a worker's background duties at shutdown) could swallow the cancel on
# Python 3.11 and keep the worker from stopping. A partition sends no RST, so the calls that
# must answer during one bound themselves: the server's ping before a submit (-> 503) and
# its events long poll. A worker's calls wait for the link and resume with it.
REDIS_SOCKET_TIMEOUT_S = 5.0
REDIS_CONNECT_TIMEOUT_S = 5.0

# Every Broker method that talks to Redis wears this: a lost link is "Redis unreachable".
redis_errors = maps_errors(
    (RedisConnectionError, RedisTimeoutError, OSError),
    lambda exc: QueueUnavailable(f"Redis unreachable: {exc}"),
)
# Trim lengths (MAXLEN ~) of the streams nobody acknowledges.
CANCELS_MAXLEN = 10_000
DEAD_MAXLEN = 10_000
# A Redis reply. redis-py types its asyncio commands' replies as unions of awaitables,
# bytes and str that cannot know the clients here decode (decode_responses=True): every
# reply is plain str / list / dict data, read as such where it arrives.
Reply = Any


class Broker:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        events_maxlen: int = 100_000,
        blocking: aioredis.Redis | None = None,
    ) -> None:
        self.redis = redis
        # XREAD / XREADGROUP BLOCK: no socket timeout (see REDIS_SOCKET_TIMEOUT_S).
        self.blocking = blocking if blocking is not None else redis
        self.events_maxlen = events_maxlen
        self._promote = redis.register_script(PROMOTE_LUA)
        self._publish = redis.register_script(PUBLISH_LUA)

    @classmethod
    def from_url(cls, redis_url: str, *, events_maxlen: int = 100_000) -> Broker:
        def client(socket_timeout_s: float | None) -> aioredis.Redis:
            return aioredis.from_url(
                redis_url,
                decode_responses=True,
                socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                socket_timeout=socket_timeout_s,
                health_check_interval=30,
                retry=CountingRetry(
                    ExponentialWithJitterBackoff(
                        base=REDIS_BACKOFF_BASE_S, cap=REDIS_BACKOFF_CAP_S
                    ),
                    retries=REDIS_RETRIES,
                ),
            )

        # redis-py 8 defaults socket_timeout to 5 s, which would turn every events long
        # poll longer than that (up to 30 s) into a TimeoutError.
        return cls(client(None), events_maxlen=events_maxlen, blocking=client(None))

    async def close(self) -> None:
        await self.redis.aclose()
        if self.blocking is not self.redis:
            await self.blocking.aclose()

    @redis_errors
    async def ping(self) -> None:
        # Bounded: a partitioned Redis must give "Redis unreachable" (503), not a hang.
        await asyncio.wait_for(self.redis.ping(), REDIS_SOCKET_TIMEOUT_S)

    # ---- tasks ---------------------------------------------------------------------
    @redis_errors
    async def enqueue_later(self, message: TaskMessage, delay_s: float) -> None:
        member = f"{STREAMS[message.task_type]}|{message.encode()[FIELD]}"
        await self.redis.zadd(DELAYED_KEY, {member: time.time() + delay_s})

    @redis_errors
    async def promote_due(self, *, limit: int = 500) -> int:
        promoted: Reply = await self._promote(keys=[DELAYED_KEY], args=[time.time(), limit])
        return int(promoted)

    @redis_errors
    async def ensure_groups(self, streams: Iterable[str]) -> None:
        for stream in streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @redis_errors
    async def read(
        self, streams: Sequence[str], consumer: str, *, count: int, block_ms: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """XREADGROUP new entries: [(stream, entry_id, fields)]."""
        try:
            got: Reply = await self.blocking.xreadgroup(
                GROUP, consumer, {s: ">" for s in streams}, count=count, block=block_ms
            )
        except ResponseError as exc:
            # NOGROUP: Redis was flushed or restarted under us; UNBLOCKED: the stream was
            # deleted while we blocked on it. Recreate and read next time.
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            await self.ensure_groups(streams)
            return []
        return [(stream, eid, fields) for stream, entries in got or [] for eid, fields in entries]

    @redis_errors
    async def autoclaim(
        self, stream: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """Take over entries another consumer left idle past the visibility timeout."""
        try:
            _next, entries, _deleted = await self.redis.xautoclaim(
                stream, GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups([stream])
            return []
        return [(stream, eid, fields) for eid, fields in entries if fields]

    @redis_errors
    async def touch(self, stream: str, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries we still work on (the heartbeat)."""
        if entry_ids:
            await self.redis.xclaim(
                stream, GROUP, consumer, min_idle_time=0, message_ids=list(entry_ids), justid=True
            )

    @redis_errors
    async def ack(self, acks: Sequence[tuple[str, str]]) -> None:
        """XACK + XDEL, pipelined: acked entries leave the stream so memory stays bounded."""
        if not acks:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_acks(pipe, acks)
            await pipe.execute()

    @staticmethod
    def _queue_acks(pipe: Any, acks: Sequence[tuple[str, str]]) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, eid in acks:
            by_stream.setdefault(stream, []).append(eid)
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)

    @redis_errors
    async def dead_letter(self, reason: str, fields: Mapping[str, object]) -> None:
        body: dict[Any, Any] = {"reason": reason[:500], "ts": str(time.time())}
        body.update({k: str(v)[:10_000] for k, v in fields.items()})
        await self.redis.xadd(DEAD_STREAM, body, maxlen=DEAD_MAXLEN, approximate=True)

    # ---- events --------------------------------------------------------------------
    @redis_errors
    async def publish(self, rows: Iterable[EventFields]) -> None:
        """XADD each row's task message onto its stream, then its event; the rows were
        just committed."""
        await self._write(rows, messages=True)

    @redis_errors
    async def emit(self, rows: Iterable[EventFields]) -> None:
        """One event per row."""
        await self._write(rows, messages=False)

    @redis_errors
    async def settle(self, events: Sequence[EventFields], acks: Sequence[tuple[str, str]]) -> None:
        """Events of rows just committed and XACK + XDEL of the entries they came from,
        in one script call (a worker ends every batch with both)."""
        await self._write(events, messages=False, acks=acks)

    @redis_errors
    async def cancelled(self, rows: Sequence[EventFields]) -> None:
        """Events for cancelled rows, and their ids on CANCELS_STREAM for the workers."""
        await self._write(rows, messages=False)
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                pipe.xadd(
                    CANCELS_STREAM,
                    {FIELD: str(r["task_id"])},
                    maxlen=CANCELS_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()

    @redis_errors
    async def read_cancels(self, after: str, *, block_ms: int) -> list[tuple[str, str]]:
        """[(entry id, task id)] after ``after`` ("$": from now on)."""
        got: Reply = await self.blocking.xread({CANCELS_STREAM: after}, count=1000, block=block_ms)
        return [(eid, f.get(FIELD, "")) for _s, entries in got or [] for eid, f in entries]

    async def _write(
        self,
        rows: Iterable[EventFields],
        *,
        messages: bool,
        acks: Sequence[tuple[str, str]] = (),
    ) -> None:
        calls = pack_rows(
            rows, messages=messages, events_maxlen=self.events_maxlen, ts=time.time(), acks=acks
        )
        for argv in calls:
            await self._publish(keys=PUBLISH_KEYS, args=argv)

    @redis_errors
    async def read_events(
        self, after: str, *, count: int = 500, block_ms: int | None = None
    ) -> list[tuple[str, JsonObject | None]]:
        """(entry id, decoded event) of the events stream after ``after``, blocking up to
        ``block_ms``; the event is None for an entry that is not ours to interpret."""
        # A partition sends no RST: past the block and a socket timeout, the link is lost
        # (asyncio's TimeoutError is an OSError: "Redis unreachable" like the rest).
        limit_s = (block_ms or 0) / 1000 + REDIS_SOCKET_TIMEOUT_S
        read = self.blocking.xread({EVENTS_STREAM: after}, count=count, block=block_ms)
        got: Reply = await asyncio.wait_for(read, limit_s)
        entries = [(eid, f) for _s, stream_entries in got or [] for eid, f in stream_entries]
        return [(eid, decode_event_or_none(eid, f)) for eid, f in entries]

    @redis_errors
    async def last_event_id(self) -> str:
        info = (
            await self.redis.xinfo_stream(EVENTS_STREAM)
            if await self.redis.exists(EVENTS_STREAM)
            else None
        )
        return info["last-generated-id"] if info else "0-0"

    # ---- workers & health ----------------------------------------------------------
    @redis_errors
    async def take_reconcile_lock(self, ttl_s: float) -> bool:
        """SET NX PX: true for the one caller that gets the lock. It is never deleted but
        expires after ``ttl_s``, so it spaces the fleet's reconciler passes that far apart."""
        ttl_ms = max(1, int(ttl_s * 1000))
        return bool(await self.redis.set(RECONCILE_LOCK_KEY, "1", nx=True, px=ttl_ms))

    @redis_errors
    async def take_gc_lock(self, ttl_s: float) -> bool:
        """As :meth:`take_reconcile_lock`, for the retention pass (one per ``ttl_s``)."""
        ttl_ms = max(1, int(ttl_s * 1000))
        return bool(await self.redis.set(GC_LOCK_KEY, "1", nx=True, px=ttl_ms))

    @redis_errors
    async def heartbeat(self, name: str, info: WorkerBeat) -> None:
        await self.redis.hset(WORKERS_KEY, name, json.dumps({**info, "ts": time.time()}))

    @redis_errors
    async def forget_worker(self, name: str) -> None:
        await self.redis.hdel(WORKERS_KEY, name)

    @redis_errors
    async def workers(self) -> dict[str, JsonObject]:
        """The heartbeat table: each worker's last beat (a WorkerBeat and its ``ts``, as
        JSON its readers narrow); an entry that is not a JSON object is left out."""
        raw: Reply = await self.redis.hgetall(WORKERS_KEY)
        out: dict[str, JsonObject] = {}
        for name, value in raw.items():
            try:
                beat = json.loads(value)
            except ValueError:
                continue
            if isinstance(beat, dict):
                out[name] = beat
        return out

    @redis_errors
    async def stream_stats(self) -> dict[str, dict[str, int]]:
        stats: dict[str, dict[str, int]] = {}
        for task_type, stream in STREAMS.items():
            length = await self.redis.xlen(stream)
            pending = 0
            try:
                for g in await self.redis.xinfo_groups(stream):
                    if g["name"] == GROUP:
                        pending = int(g["pending"])
            except ResponseError:
                pass
            stats[task_type] = {
                "length": length,
                "pending": pending,
                "priority_length": await self.redis.xlen(PRIORITY_STREAMS[task_type]),
            }
        return stats

    @redis_errors
    async def dead_letter_count(self) -> int:
        return int(await self.redis.xlen(DEAD_STREAM))

    @redis_errors
    async def queued_ids(self, stream: str) -> set[str]:
        """Task ids any entry of ``stream`` still carries (for the reconciler)."""
        ids: set[str] = set()
        last = "-"
        while True:
            entries: Reply = await self.redis.xrange(stream, min=last, max="+", count=1000)
            if last != "-" and entries and entries[0][0] == last:
                entries = entries[1:]
            if not entries:
                break
            for _eid, fields in entries:
                try:
                    ids.add(TaskMessage.decode(fields).task_id.hex)
                except Exception:  # noqa: BLE001 - a malformed entry holds no task
                    continue
            last = entries[-1][0]
        members: Reply = await self.redis.zrange(DELAYED_KEY, 0, -1)
        for member in members:
            if member.startswith(stream + "|"):
                try:
                    ids.add(json.loads(member.split("|", 1)[1])["task_id"].replace("-", ""))
                except (ValueError, KeyError):
                    continue
        return ids
