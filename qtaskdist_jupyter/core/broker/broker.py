"""Broker: every Redis command qtaskdist runs (streams, events, delays, heartbeats)."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from qtaskdist_jupyter.core.broker.wire import (
    CANCELS_MAXLEN,
    CANCELS_STREAM,
    DEAD_STREAM,
    DELAYED_KEY,
    EVENTS_STREAM,
    FIELD,
    GROUP,
    PRIORITY_STREAMS,
    STREAMS,
    WORKERS_KEY,
    TaskMessage,
    event_tail,
    message_tail,
)
from qtaskdist_jupyter.core.errors import QueueUnavailable
from qtaskdist_jupyter.core.metrics import CountingRetry

# Move due entries of the delay ZSET onto their streams atomically, so two workers
# promoting at once can't XADD the same retry twice.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  local stream = string.sub(member, 1, sep - 1)
  local msg = string.sub(member, sep + 1)
  redis.call('XADD', stream, '*', 'm', msg)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

# Task messages and events for many rows in one call. ARGV[3] holds one line per row,
# "<task id> TAB <KEYS index of its task stream, 0: event only> TAB <ARGV index of the
# message tail> TAB <ARGV index of the event tail>"; both bodies are TASK_ID_HEAD + id +
# tail, and rows of one kind share their tails, so Python sends ids, not 2 JSON per row.
# ARGV[4] holds "<KEYS index> TAB <entry id>" lines to XACK + XDEL in the same call (a
# worker ends each batch with both; in a pipeline redis-py adds a SCRIPT EXISTS trip).
_PUBLISH = """
local n = 0
for id, k, m, e in string.gmatch(ARGV[3], '([^\\t\\n]+)\\t(%d+)\\t(%d+)\\t(%d+)') do
  local head = '{"task_id":"' .. id
  k = tonumber(k)
  if k > 0 then
    redis.call('XADD', KEYS[k], '*', 'm', head .. ARGV[tonumber(m)])
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', head .. ARGV[tonumber(e)])
  n = n + 1
end
for k, eid in string.gmatch(ARGV[4], '(%d+)\\t([^\\n]+)') do
  redis.call('XACK', KEYS[tonumber(k)], ARGV[2], eid)
  redis.call('XDEL', KEYS[tonumber(k)], eid)
end
return n
"""
# KEYS of _PUBLISH: the events stream first, then every task stream (normal, priority).
_PUBLISH_KEYS = [EVENTS_STREAM, *STREAMS.values(), *PRIORITY_STREAMS.values()]
_KEY_INDEX = {stream: i for i, stream in enumerate(_PUBLISH_KEYS, start=1)}


def _intern(
    tails: dict[Any, int], args: list[Any], key: Any, make: Callable[..., str], *how: Any
) -> int:
    """The ARGV index (1-based, as Lua counts) of the tail for ``key``, made once."""
    index = tails.get(key)
    if index is None:
        args.append(make(*how))
        index = tails[key] = len(args)
    return index


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

# Entries per script call: a call blocks Redis while it runs (about 1-2 ms per 1,000).
_SCRIPT_CHUNK = 1000


def _redis_errors(fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from exc

    return wrapper


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
        self._promote = redis.register_script(_PROMOTE)
        self._publish = redis.register_script(_PUBLISH)

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

    @_redis_errors
    async def ping(self) -> None:
        # Bounded: a partitioned Redis must give "Redis unreachable" (503), not a hang.
        await asyncio.wait_for(self.redis.ping(), REDIS_SOCKET_TIMEOUT_S)

    # ---- tasks ---------------------------------------------------------------------
    @_redis_errors
    async def enqueue_later(self, message: TaskMessage, delay_s: float) -> None:
        member = f"{STREAMS[message.task_type]}|{message.encode()[FIELD]}"
        await self.redis.zadd(DELAYED_KEY, {member: time.time() + delay_s})

    @_redis_errors
    async def promote_due(self, *, limit: int = 500) -> int:
        return int(await self._promote(keys=[DELAYED_KEY], args=[time.time(), limit]))

    @_redis_errors
    async def ensure_groups(self, streams: Iterable[str]) -> None:
        for stream in streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @_redis_errors
    async def read(
        self, streams: Sequence[str], consumer: str, *, count: int, block_ms: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """XREADGROUP new entries: [(stream, entry_id, fields)]."""
        try:
            got = await self.blocking.xreadgroup(
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

    @_redis_errors
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

    @_redis_errors
    async def touch(self, stream: str, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries we still work on (the heartbeat)."""
        if entry_ids:
            await self.redis.xclaim(
                stream, GROUP, consumer, min_idle_time=0, message_ids=list(entry_ids), justid=True
            )

    @_redis_errors
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

    @_redis_errors
    async def dead_letter(self, reason: str, fields: dict[str, Any]) -> None:
        body = {"reason": reason[:500], "ts": str(time.time())}
        body.update({k: str(v)[:10_000] for k, v in fields.items()})
        await self.redis.xadd(DEAD_STREAM, body, maxlen=10_000, approximate=True)

    # ---- events --------------------------------------------------------------------
    @_redis_errors
    async def publish(self, rows: Iterable[dict[str, Any]]) -> None:
        """XADD each row's task message onto its stream, then its event; rows are dicts
        with task_id, task_type, status, owner, attempt and batch_id, just committed."""
        await self._write(rows, messages=True)

    @_redis_errors
    async def emit(self, rows: Iterable[dict[str, Any]]) -> None:
        """One event per row (a dict with task_id, status, owner, task_type, attempt)."""
        await self._write(rows, messages=False)

    @_redis_errors
    async def settle(
        self, events: Sequence[dict[str, Any]], acks: Sequence[tuple[str, str]]
    ) -> None:
        """Events of rows just committed and XACK + XDEL of the entries they came from,
        in one script call (a worker ends every batch with both)."""
        await self._write(events, messages=False, acks=acks)

    @_redis_errors
    async def cancelled(self, rows: Sequence[dict[str, Any]]) -> None:
        """Events for cancelled rows, and their ids on CANCELS_STREAM for the workers."""
        await self._write(rows, messages=False)
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                pipe.xadd(
                    CANCELS_STREAM, {FIELD: str(r["task_id"])},
                    maxlen=CANCELS_MAXLEN, approximate=True,
                )  # fmt: skip
            await pipe.execute()

    @_redis_errors
    async def read_cancels(self, after: str, *, block_ms: int) -> list[tuple[str, str]]:
        """[(entry id, task id)] after ``after`` ("$": from now on)."""
        got = await self.blocking.xread({CANCELS_STREAM: after}, count=1000, block=block_ms)
        return [(eid, f.get(FIELD, "")) for _s, entries in got or [] for eid, f in entries]

    async def _write(
        self,
        rows: Iterable[dict[str, Any]],
        *,
        messages: bool,
        acks: Sequence[tuple[str, str]] = (),
    ) -> None:
        calls = self._script_args(rows, messages=messages)
        if acks:
            if not calls:
                calls = [[self.events_maxlen, GROUP, "", ""]]
            calls[-1][3] = "\n".join(f"{_KEY_INDEX[s]}\t{e}" for s, e in acks)
        for args in calls:
            await self._publish(keys=_PUBLISH_KEYS, args=args)

    def _script_args(self, rows: Iterable[dict[str, Any]], *, messages: bool) -> list[list[Any]]:
        """ARGV of one _PUBLISH call per chunk of rows."""
        rows = list(rows)
        ts = time.time()
        calls = []
        for start in range(0, len(rows), _SCRIPT_CHUNK):
            tails: dict[Any, int] = {}
            args: list[Any] = [self.events_maxlen, GROUP, "", ""]
            lines = []
            for r in rows[start : start + _SCRIPT_CHUNK]:
                ttype, attempt, status = r["task_type"], r["attempt"], str(r["status"])
                k = m = 0
                if messages:
                    # A row marked "priority" (a small submission) goes to the stream
                    # workers read first.
                    k = _KEY_INDEX[(PRIORITY_STREAMS if r.get("priority") else STREAMS)[ttype]]
                    m = _intern(tails, args, ("m", ttype, attempt), message_tail, ttype, attempt)
                owner, batch = r["owner"], r.get("batch_id")
                e = _intern(
                    tails, args, ("e", status, owner, ttype, attempt, batch),
                    lambda s=status, o=owner, t=ttype, a=attempt, b=batch: event_tail(
                        s, owner=o, task_type=t, attempt=a, batch_id=b, ts=ts
                    ),
                )  # fmt: skip
                lines.append(f"{r['task_id']}\t{k}\t{m}\t{e}")
            args[2] = "\n".join(lines)
            calls.append(args)
        return calls

    @_redis_errors
    async def read_events(
        self, after: str, *, count: int = 500, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        # A partition sends no RST: past the block and a socket timeout, the link is lost
        # (asyncio's TimeoutError is an OSError: "Redis unreachable" like the rest).
        limit_s = (block_ms or 0) / 1000 + REDIS_SOCKET_TIMEOUT_S
        read = self.blocking.xread({EVENTS_STREAM: after}, count=count, block=block_ms)
        got = await asyncio.wait_for(read, limit_s)
        return [(eid, f) for _s, entries in got or [] for eid, f in entries]

    @_redis_errors
    async def last_event_id(self) -> str:
        info = (
            await self.redis.xinfo_stream(EVENTS_STREAM)
            if await self.redis.exists(EVENTS_STREAM)
            else None
        )
        return info["last-generated-id"] if info else "0-0"

    # ---- workers & health ----------------------------------------------------------
    @_redis_errors
    async def heartbeat(self, name: str, info: dict[str, Any]) -> None:
        await self.redis.hset(WORKERS_KEY, name, json.dumps({**info, "ts": time.time()}))

    @_redis_errors
    async def forget_worker(self, name: str) -> None:
        await self.redis.hdel(WORKERS_KEY, name)

    @_redis_errors
    async def workers(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(WORKERS_KEY)
        out = {}
        for name, value in raw.items():
            try:
                out[name] = json.loads(value)
            except ValueError:
                continue
        return out

    @_redis_errors
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

    @_redis_errors
    async def dead_letter_count(self) -> int:
        return int(await self.redis.xlen(DEAD_STREAM))

    @_redis_errors
    async def queued_ids(self, stream: str) -> set[str]:
        """Task ids any entry of ``stream`` still carries (for the reconciler)."""
        ids: set[str] = set()
        last = "-"
        while True:
            entries = await self.redis.xrange(stream, min=last, max="+", count=1000)
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
        for member in await self.redis.zrange(DELAYED_KEY, 0, -1):
            if member.startswith(stream + "|"):
                try:
                    ids.add(json.loads(member.split("|", 1)[1])["task_id"].replace("-", ""))
                except (ValueError, KeyError):
                    continue
        return ids
