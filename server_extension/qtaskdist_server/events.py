"""Live task events: tail ``stream:events`` with XREAD BLOCK, filtered to one owner.

One blocking XREAD per waiting client, so an idle widget costs Redis nothing but a parked
connection and the database nothing at all. Two shapes over the same reader:

* long poll: wait up to ``timeout_s`` for at least one of the owner's events, answer
  ``{"events": [...], "cursor": id}``; the client passes ``cursor`` back as ``after``;
* server-sent events: ``id:`` is the stream id (so ``Last-Event-ID`` resumes), ``data:``
  the event JSON, and a comment line every ``keepalive_s`` to notice a gone client.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from qtaskdist_jupyter.errors import InvalidInput
from qtaskdist_jupyter.models import TaskStatus
from qtaskdist_jupyter.queue import Broker
from qtaskdist_jupyter.streams import DELETED, decode_event

_STREAM_ID = re.compile(r"^\d+(-\d+)?$")


def parse_after(after: str | None) -> str | None:
    """A stream id, or None for 'from now on'."""
    if after in (None, "", "$"):
        return None
    if not _STREAM_ID.match(after):
        raise InvalidInput(
            f"after={after!r} is not a stream id like 1712345678901-0", field="after"
        )
    return after


def parse_statuses(raw: str | None) -> frozenset[str] | None:
    """``status=completed,failed``: only events that carry one of these (None: all)."""
    if not raw:
        return None
    known = {s.value for s in TaskStatus} | {DELETED}
    wanted = frozenset(s for s in raw.split(",") if s)
    bad = sorted(wanted - known)
    if bad:
        raise InvalidInput(f"status={bad[0]!r} is not one of {sorted(known)}", field="status")
    return wanted


class EventTail:
    """Reads the events stream from ``cursor`` on, keeping only ``owner``'s events (and,
    with ``statuses``, only those statuses: a waiter asks for the finished ones and its
    long poll no longer returns at every queued / running event)."""

    def __init__(
        self, broker: Broker, owner: str, cursor: str, statuses: frozenset[str] | None = None
    ) -> None:
        self.broker = broker
        self.owner = owner
        self.cursor = cursor
        self.statuses = statuses

    @classmethod
    async def start(
        cls,
        broker: Broker,
        owner: str,
        after: str | None,
        statuses: frozenset[str] | None = None,
    ) -> EventTail:
        cursor = after if after is not None else await broker.last_event_id()
        return cls(broker, owner, cursor, statuses)

    async def read(self, block_ms: int | None, count: int = 500) -> list[dict[str, Any]]:
        """One XREAD (``block_ms=None``: don't block); the cursor moves past other
        owners' events too, so a quiet user's poll still advances."""
        entries = await self.broker.read_events(self.cursor, count=count, block_ms=block_ms)
        out = []
        for eid, fields in entries:
            self.cursor = eid
            try:
                event = decode_event(eid, fields)
            except (ValueError, TypeError, KeyError):
                continue  # not ours to interpret; never fatal for a reader
            if event.get("owner") == self.owner and (
                self.statuses is None or event.get("status") in self.statuses
            ):
                event.pop("owner", None)
                out.append(event)
        return out

    async def poll(self, timeout_s: float) -> list[dict[str, Any]]:
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


def sse_frame(event: dict[str, Any]) -> str:
    return f"id: {event['id']}\nevent: task\ndata: {json.dumps(event, default=str)}\n\n"


async def stream_sse(
    tail: EventTail,
    write: Callable[[str], Awaitable[None]],
    closed: asyncio.Event,
    *,
    keepalive_s: float = 15.0,
) -> None:
    """Write frames until the client goes away (``closed`` set or ``write`` raising)."""
    await write(f"retry: 2000\n: connected {tail.cursor}\n\n")
    while not closed.is_set():
        reader = asyncio.ensure_future(tail.read(block_ms=int(keepalive_s * 1000)))
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
        else:
            await write(": keepalive\n\n")
