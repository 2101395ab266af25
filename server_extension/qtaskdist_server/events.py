"""Live task events (`GET events`): tail ``stream:events`` with XREAD BLOCK, filtered to one owner.

One blocking XREAD per waiting client, so an idle widget costs Redis nothing but a parked
connection and the database nothing at all. Two shapes over the same reader:

* long poll: wait up to ``timeout_s`` for at least one of the owner's events, answer
  ``{"events": [...], "cursor": c}``; the client passes ``cursor`` back as ``after``;
* server-sent events: ``id:`` is the stream id (so ``Last-Event-ID`` resumes), ``data:``
  the event JSON, and a comment line every ``keepalive_s`` to notice a gone client.

Nothing here tells one user about another's activity. The reader moves past other
owners' events, but the cursor a client gets back is always an opaque token (the position
read up to, sealed for this owner: :mod:`qtaskdist_server.api.cursors`), never a stream
id, so an answer looks the same whether or not anyone else's events followed ``after``;
and keepalives go out on a fixed schedule, not when someone else's events arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from tornado.iostream import StreamClosedError

from qtaskdist_jupyter.core import strictjson
from qtaskdist_jupyter.core.errors import QuotaExceeded, ServiceUnavailable
from qtaskdist_jupyter.core.queue import EventPage, TaskEvent
from qtaskdist_server.api import params as qp
from qtaskdist_server.api.cursors import CURSOR_TOKEN, CursorSealer, cursor_key
from qtaskdist_server.api.fleet import public_message

from .base import QtaskdistHandler


class EventSource(Protocol):
    """Where the events stream is read: the TaskService (or its TaskQueue)."""

    async def events(
        self, after: str, *, count: int = ..., block_ms: int | None = ...
    ) -> EventPage: ...

    async def last_event_id(self) -> str: ...


class StreamCounter:
    """Open events requests per owner (each holds a Redis connection while it waits)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, owner: str, cap: int) -> Iterator[None]:
        n = self._open.get(owner, 0)
        if n >= cap:
            raise QuotaExceeded(
                f"{n} events requests of yours are open; the limit is {cap}. "
                "Close a notebook tab or a waiting cell",
                field="request",
                limit="event_streams",
                retry_after_s=5,
                maximum=cap,
            )
        self._open[owner] = n + 1
        try:
            yield
        finally:
            left = self._open[owner] - 1
            if left:
                self._open[owner] = left
            else:
                del self._open[owner]


class EventTail:
    """Reads the events stream from ``position`` on, keeping only ``owner``'s events (and,
    with ``statuses``, only those statuses: a waiter asks for the finished ones and its
    long poll no longer returns at every queued / running event)."""

    def __init__(
        self,
        source: EventSource,
        owner: str,
        position: str,
        statuses: frozenset[str] | None = None,
        sealer: CursorSealer | None = None,
    ) -> None:
        self.source = source
        self.owner = owner
        self.position = position
        self.statuses = statuses
        self.sealer = sealer or CursorSealer(cursor_key(None))

    @classmethod
    async def start(
        cls,
        source: EventSource,
        owner: str,
        after: str | None,
        statuses: frozenset[str] | None = None,
        sealer: CursorSealer | None = None,
    ) -> EventTail:
        """From ``after`` (a cursor, checked: 422 unless sealed for ``owner``; or a stream
        id, as Last-Event-ID sends), else from now."""
        sealer = sealer or CursorSealer(cursor_key(None))
        position = None
        if after is not None and CURSOR_TOKEN.fullmatch(after):
            position = sealer.open(owner, after)
        elif after is not None:
            position = after
        return cls(source, owner, position or await source.last_event_id(), statuses, sealer)

    @property
    def cursor(self) -> str:
        """Where to resume: the read position sealed for this owner (echoing a stream id
        back would tell whether anything, anyone's, followed it)."""
        return self.sealer.seal(self.owner, self.position)

    async def read(self, block_ms: int | None, count: int = 500) -> list[TaskEvent]:
        """One XREAD (``block_ms=None``: don't block): this owner's events (of the
        statuses asked for); the position moves past other owners' events too, so a quiet
        user's poll still advances."""
        page = await self.source.events(self.position, count=count, block_ms=block_ms)
        # Past the entries the queue could not interpret too: never fatal for a reader.
        self.position = page.position or self.position
        return [
            e
            for e in page.events
            if e.owner == self.owner and (self.statuses is None or e.status in self.statuses)
        ]

    async def poll(self, timeout_s: float) -> list[TaskEvent]:
        """Wait until at least one event of ours arrives or ``timeout_s`` passes."""
        if timeout_s <= 0:
            return await self.read(block_ms=None)
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return []
            events = await self.read(block_ms=left_ms)
            if events:
                return events


def sse_frame(event: TaskEvent) -> str:
    return f"id: {event.id}\nevent: task\ndata: {strictjson.dumps(event.to_json())}\n\n"


async def stream_sse(
    tail: EventTail,
    write: Callable[[str], Awaitable[None]],
    closed: asyncio.Event,
    *,
    keepalive_s: float = 15.0,
) -> None:
    """Write frames until the client goes away (``closed`` set or ``write`` raising).

    A keepalive goes out ``keepalive_s`` after the last write, whatever other users do:
    the reader wakes on their events too, but that never shows on this stream."""
    await write("retry: 2000\n: connected\n\n")
    last_write = time.monotonic()
    while not closed.is_set():
        left_ms = max(1, int((last_write + keepalive_s - time.monotonic()) * 1000))
        reader = asyncio.ensure_future(tail.read(block_ms=left_ms))
        gone = asyncio.ensure_future(closed.wait())
        done, _ = await asyncio.wait({reader, gone}, return_when=asyncio.FIRST_COMPLETED)
        if reader not in done:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            return
        gone.cancel()
        events = reader.result()
        if events:
            await write("".join(sse_frame(e) for e in events))
            last_write = time.monotonic()
        elif time.monotonic() - last_write >= keepalive_s:
            await write(": keepalive\n\n")
            last_write = time.monotonic()


class EventsHandler(QtaskdistHandler):
    """``GET events``: a long poll, or server-sent events with ``Accept: text/event-stream``."""

    _closed: asyncio.Event | None = None

    async def get(self) -> None:
        values = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        if self.request.headers.get("Last-Event-ID"):
            values["after"] = self.request.headers["Last-Event-ID"]
        q = qp.parse(qp.EventsParams, values, max_timeout_s=self.app.events_max_timeout_s)
        owner = self.owner
        with self.app.event_streams.hold(owner, self.service.settings.limits.max_event_streams):
            tail = await EventTail.start(self.service, owner, q.after, q.status, self.app.cursors)
            if "text/event-stream" in self.request.headers.get("Accept", ""):
                await self._sse(tail)
                return
            events = await tail.poll(q.timeout_s)
            self.json({"events": [e.to_json() for e in events], "cursor": tail.cursor})

    async def _sse(self, tail: EventTail) -> None:
        self._closed = asyncio.Event()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

        async def write(chunk: str) -> None:
            self.write(chunk)
            await self.flush()

        try:
            await stream_sse(tail, write, self._closed)
        except StreamClosedError:
            return
        except ServiceUnavailable as exc:
            # Headers are sent, so no 503 now: say why and end the stream; EventSource
            # reconnects by itself (retry: 2000) and resumes from Last-Event-ID.
            self.log.warning("qtaskdist events stream ended: %s", exc.message)
            frame = {"error": exc.code, "detail": public_message(exc)}
            self.write(f"event: error\ndata: {strictjson.dumps(frame)}\n\n")
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        if self._closed is not None:
            self._closed.set()
        super().on_connection_close()
