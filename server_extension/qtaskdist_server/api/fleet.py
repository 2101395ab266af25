"""What the operator views read: ``GET health`` (up/down, the caller's queue and, for an
operator, the workers and streams) and the snapshot ``GET metrics`` exports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.errors import (
    AuthUnavailable,
    DatabaseUnavailable,
    QueueUnavailable,
    ServiceUnavailable,
)
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.core.store.store import TaskStore

# What a user reads when a backing service is down: no host, port or driver text (those
# go to the server log).
_PUBLIC_503 = {
    DatabaseUnavailable: "the task database is unreachable; try again shortly",
    QueueUnavailable: "the task queue is unreachable; try again shortly",
    AuthUnavailable: "the hub that checks tokens is unreachable; try again shortly",
}
# A health probe that gets no answer in this long reports "timed out".
PROBE_TIMEOUT_S = 10.0
_QUEUE_STATUSES = (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING)


def public_message(exc: ServiceUnavailable) -> str:
    for cls, text in _PUBLIC_503.items():
        if isinstance(exc, cls):
            return text
    return "a backing service is unreachable; try again shortly"


def workers_seen(beats: dict[str, dict[str, Any]], stale_s: float) -> list[dict[str, Any]]:
    """The heartbeat table as GET health lists it: by name, each with the age of its last
    beat and whether that is fresher than ``stale_s``."""
    now = time.time()
    out = []
    for name, info in sorted(beats.items()):
        age = max(0.0, now - float(info.pop("ts", 0)))
        out.append(
            {
                **info,
                "name": name,
                "host": info.get("host"),
                "pid": info.get("pid"),
                "last_heartbeat_s": round(age, 3),
                "alive": age < stale_s,
            }
        )
    return out


async def health(
    store: TaskStore, broker: Broker, owner: str, *, operator: bool, stale_s: float
) -> dict[str, Any]:
    db, redis = await asyncio.gather(_probe(store.ping()), _probe(broker.ping()))
    out: dict[str, Any] = {"database": db, "redis": redis}
    if db["ok"]:
        counts = await store.counts(owner=owner)
        out["queue"] = {s: counts[s] for s in _QUEUE_STATUSES}
    if operator:
        # Fleet internals (hosts, pids, global depths) are for operators only.
        workers: list[dict[str, Any]] = []
        streams: dict[str, Any] = {}
        if redis["ok"]:
            try:
                workers = workers_seen(await broker.workers(), stale_s)
                streams = await broker.stream_stats()
            except ServiceUnavailable as exc:
                redis.update(ok=False, error=public_message(exc))
        out.update({"workers": workers, "streams": streams})
    return out


async def _probe(check: Awaitable[None]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check, timeout=PROBE_TIMEOUT_S)
        return {"ok": True}
    except ServiceUnavailable as exc:
        return {"ok": False, "error": public_message(exc)}
    except TimeoutError:
        return {"ok": False, "error": "timed out"}


@dataclass
class Snapshot:
    """What one look at PostgreSQL and Redis found (None: that side was unreachable)."""

    tasks: dict[tuple[str, str], int] | None = None  # (task_type, status) -> rows
    streams: dict[str, dict[str, int]] | None = None
    workers: tuple[int, int] | None = None  # (alive, known)
    dead_letters: int | None = None
    taken_s: float = 0.0  # time.monotonic() when taken


async def snapshot(store: TaskStore, broker: Broker, stale_s: float) -> Snapshot:
    snap = Snapshot()
    try:
        snap.tasks = await store.counts_by_type()
    except ServiceUnavailable:
        pass
    try:
        snap.streams = await broker.stream_stats()
        snap.dead_letters = await broker.dead_letter_count()
        beats = workers_seen(await broker.workers(), stale_s)
        snap.workers = (sum(1 for b in beats if b["alive"]), len(beats))
    except ServiceUnavailable:
        snap.streams = None
    snap.taken_s = time.monotonic()
    return snap
