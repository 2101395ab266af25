"""Taking over abandoned stream entries: XAUTOCLAIM what sat idle past the visibility
timeout, and let the task's row decide what the entry still means."""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass

from qtaskdist_jupyter.core.queue import TaskQueue, TaskRow
from qtaskdist_jupyter.core.status import TaskStatus

from .inflight import Claimable, DeadLetter, InFlightRegistry, decode_entries
from .reconciler import live_workers

log = logging.getLogger("qtaskdist_worker")
# Registers claimed rows as in flight and runs them (Worker.start).
Start = Callable[
    [list[Claimable], list[TaskRow], list[tuple[str, str]], list[DeadLetter]],
    Awaitable[None],
]


class Action(enum.Enum):
    ACK = "ack"  # nothing left to run for this entry: drop it
    CLAIM = "claim"  # still queued at the message's attempt: claim it as a fresh read would
    TAKE_OVER = "take over"  # running under a worker that stopped heartbeating
    WAIT = "wait"  # running under a live worker: leave it, look again later


def autoclaim_action(row: TaskRow | None, msg_attempt: int, alive: Container[str]) -> Action:
    """What an entry idle past the visibility timeout still means, by its task's row.

    A claim moves a row to ``attempt + 1``, so the message of the attempt that is running
    now carries ``row.attempt - 1``. Any other pairing (finished, cancelled, retried or
    taken over since) makes the entry stale."""
    if row is None:
        return Action.ACK
    if row.status == TaskStatus.QUEUED and row.attempt == msg_attempt:
        return Action.CLAIM
    if row.status == TaskStatus.RUNNING and row.attempt == msg_attempt + 1:
        live = row.worker is not None and row.worker in alive
        return Action.WAIT if live else Action.TAKE_OVER
    return Action.ACK


@dataclass
class Autoclaimer:
    queue: TaskQueue
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
            entries = await self.queue.upkeep.take_idle(
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
            rows = await self.queue.rows([m.task_id for *_x, m in msgs])
            if alive is None and any(r.status == TaskStatus.RUNNING for r in rows.values()):
                alive = live_workers(await self.queue.broker.workers(), self.visibility_timeout_s)
            to_claim, taken = await self._sort(msgs, rows, alive or set(), acks)
            claimed = await self.queue.claim(
                [(m.task_id, m.attempt) for *_x, m in to_claim], self.name
            )
            all_rows = claimed + [g for _t, g in taken]
            await self.start(to_claim + [t for t, _g in taken], all_rows, acks, dead)

    async def _sort(
        self,
        msgs: list[Claimable],
        rows: dict[uuid.UUID, TaskRow],
        alive: set[str],
        acks: list[tuple[str, str]],
    ) -> tuple[list[Claimable], list[tuple[Claimable, TaskRow]]]:
        """The entries to claim as a fresh read would, and those taken over (with their
        rows); the stale ones (and those whose take-over lost a race) go to ``acks``."""
        to_claim: list[Claimable] = []
        taken: list[tuple[Claimable, TaskRow]] = []
        for s, eid, m in msgs:
            row = rows.get(m.task_id)
            action = autoclaim_action(row, m.attempt, alive)
            if action is Action.ACK:
                acks.append((s, eid))
            elif action is Action.CLAIM:
                to_claim.append((s, eid, m))
            elif action is Action.TAKE_OVER:
                assert row is not None
                got = await self.queue.take_over(m.task_id, row.attempt, self.name)
                if got is None:
                    acks.append((s, eid))
                    continue
                log.warning("took over task %s from %s", m.task_id, row.worker)
                taken.append(((s, eid, m), got))
        return to_claim, taken
