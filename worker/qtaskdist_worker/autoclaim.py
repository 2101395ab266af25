"""Taking over abandoned stream entries: XAUTOCLAIM what sat idle past the visibility
timeout, and let the task's row decide what the entry still means."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.errors import TaskNotFound, TransitionError
from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.core.store.store import TaskStore

from .inflight import Claimable, DeadLetter, InFlightRegistry, decode_entries
from .reconciler import live_workers

log = logging.getLogger("qtaskdist_worker")
# Registers claimed rows as in flight and runs them (Worker.start).
Start = Callable[
    [list[Claimable], list[dict[str, Any]], list[tuple[str, str]], list[DeadLetter]],
    Awaitable[None],
]


class Action(enum.Enum):
    ACK = "ack"  # nothing left to run for this entry: drop it
    CLAIM = "claim"  # still queued at the message's attempt: claim it as a fresh read would
    TAKE_OVER = "take over"  # running under a worker that stopped heartbeating
    WAIT = "wait"  # running under a live worker: leave it, look again later


def autoclaim_action(
    row: Mapping[str, Any] | None, msg_attempt: int, alive: Container[str]
) -> Action:
    """What an entry idle past the visibility timeout still means, by its task's row.

    A claim moves a row to ``attempt + 1``, so the message of the attempt that is running
    now carries ``row.attempt - 1``. Any other pairing (finished, cancelled, retried or
    taken over since) makes the entry stale."""
    if row is None:
        return Action.ACK
    if row["status"] == TaskStatus.QUEUED and row["attempt"] == msg_attempt:
        return Action.CLAIM
    if row["status"] == TaskStatus.RUNNING and row["attempt"] == msg_attempt + 1:
        return Action.WAIT if row["worker"] in alive else Action.TAKE_OVER
    return Action.ACK


@dataclass
class Autoclaimer:
    store: TaskStore
    broker: Broker
    inflight: InFlightRegistry
    name: str
    visibility_timeout_s: float
    batch_size: int
    stopping: asyncio.Event
    # The streams this worker has room to read now (a full lane takes over nothing).
    readable: Callable[[], list[str]]
    start: Start

    async def run_once(self) -> None:
        if self.stopping.is_set():
            return
        alive: set[str] | None = None
        for stream in self.readable():
            entries = await self.broker.autoclaim(
                stream,
                self.name,
                min_idle_ms=int(self.visibility_timeout_s * 1000),
                count=self.batch_size,
            )
            entries = [e for e in entries if not self.inflight.holds_entry(e[1])]
            if not entries:
                continue
            acks: list[tuple[str, str]] = []
            dead: list[DeadLetter] = []
            msgs = decode_entries(entries, acks, dead)
            rows = {
                r["task_id"]: r for r in await self.store.get_many([m.task_id for *_x, m in msgs])
            }
            if alive is None and any(r["status"] == TaskStatus.RUNNING for r in rows.values()):
                alive = live_workers(await self.broker.workers(), self.visibility_timeout_s)
            to_claim: list[Claimable] = []
            taken: list[tuple[Claimable, dict[str, Any]]] = []
            for s, eid, m in msgs:
                row = rows.get(m.task_id)
                action = autoclaim_action(row, m.attempt, alive or set())
                if action is Action.ACK:
                    acks.append((s, eid))
                elif action is Action.CLAIM:
                    to_claim.append((s, eid, m))
                elif action is Action.TAKE_OVER:
                    assert row is not None
                    try:
                        got = await self.store.takeover(m.task_id, row["attempt"], self.name)
                    except (TransitionError, TaskNotFound):
                        acks.append((s, eid))
                        continue
                    log.warning("took over task %s from %s", m.task_id, row["worker"])
                    taken.append(((s, eid, m), got))
            claimed = await self.store.claim_many(
                [(m.task_id, m.attempt) for *_x, m in to_claim], self.name
            )
            all_rows = claimed + [g for _t, g in taken]
            await self.start(to_claim + [t for t, _g in taken], all_rows, acks, dead)
