"""What the operator views read: ``GET health`` (up/down, the caller's queue and, for an
operator, the workers and streams) and the snapshot ``GET metrics`` exports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

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


class Probe(TypedDict):
    """Whether a backing service answered its ping, and why not (a public text)."""

    ok: bool
    error: NotRequired[str]


class Health(TypedDict):
    """GET health: both probes, the asker's queue (when the database answered) and, for
    an operator only, the workers (:func:`workers_seen`) and the streams' depths."""

    database: Probe
    redis: Probe
    queue: NotRequired[dict[str, int]]
    workers: NotRequired[list[dict[str, object]]]
    streams: NotRequired[dict[str, dict[str, int]]]


def workers_seen(
    beats: Mapping[str, Mapping[str, object]], stale_s: float
) -> list[dict[str, object]]:
    """The heartbeat table as GET health lists it: by name, each beat's own fields but its
    time, with the age of its last beat and whether that is fresher than ``stale_s``."""
    now = time.time()
    out: list[dict[str, object]] = []
    for name, info in sorted(beats.items()):
        age = max(0.0, now - _beat_time(info.get("ts", 0)))
        out.append(
            {
                **{k: v for k, v in info.items() if k != "ts"},
                "name": name,
                "host": info.get("host"),
                "pid": info.get("pid"),
                "last_heartbeat_s": round(age, 3),
                "alive": age < stale_s,
            }
        )
    return out


def _beat_time(ts: object) -> float:
    """A beat's time in seconds since the epoch (the broker writes a number; not one: 0)."""
    return float(ts) if isinstance(ts, int | float | str) else 0.0


async def health(
    store: TaskStore, broker: Broker, owner: str, *, operator: bool, stale_s: float
) -> Health:
    db, redis = await asyncio.gather(_probe(store.ping()), _probe(broker.ping()))
    out: Health = {"database": db, "redis": redis}
    if db["ok"]:
        counts = await store.counts(owner=owner)
        out["queue"] = {s: counts[s] for s in _QUEUE_STATUSES}
    if operator:
        # Fleet internals (hosts, pids, global depths) are for operators only.
        workers: list[dict[str, object]] = []
        streams: dict[str, dict[str, int]] = {}
        if redis["ok"]:
            try:
                workers = workers_seen(await broker.workers(), stale_s)
                streams = await broker.stream_stats()
            except ServiceUnavailable as exc:
                redis["ok"], redis["error"] = False, public_message(exc)
        out["workers"], out["streams"] = workers, streams
    return out


async def _probe(check: Awaitable[None]) -> Probe:
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
