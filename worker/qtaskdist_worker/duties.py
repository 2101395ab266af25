"""The worker's duties beside its read loop: heartbeat, cancellation watch, reconciler,
XAUTOCLAIM of abandoned entries, and the drain on shutdown. Mixed into :class:`Worker`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any

from qtaskdist_jupyter.core.errors import ServiceUnavailable, TaskNotFound, TransitionError

from . import reconciler
from .outcomes import HOST, InFlight

if TYPE_CHECKING:
    pass

import logging

log = logging.getLogger("qtaskdist_worker")


class Duties:
    async def _heartbeat_once(self) -> None:
        by_stream: dict[str, list[str]] = {}
        for item in list(self.inflight.values()):
            by_stream.setdefault(item.stream, []).append(item.entry_id)
        for stream, ids in by_stream.items():
            await self.broker.touch(stream, self.name, ids)
        await self.broker.heartbeat(
            self.name,
            {
                "host": HOST, "pid": os.getpid(), "task_types": self.opts.task_types,
                "in_flight": len(self.inflight), "started": self.started,
                "concurrency": self.opts.concurrency, "completed": self.completed,
            },
        )  # fmt: skip
        if self.inflight:
            # Catches cancellations whose event we missed (stream trimmed or flushed).
            states = await self.store.status_of(list(self.inflight))
            for tid, (status, attempt) in states.items():
                item = self.inflight.get(tid)
                if item and (status == "cancelled" or attempt != item.attempt):
                    self._cancel(item)

    def _cancel(self, item: InFlight) -> None:
        if not item.cancelled:
            log.info("task %s was cancelled; stopping it", item.task_id)
        item.cancelled = True
        if item.cancel is not None:
            item.cancel.set()

    async def _watch_cancels(self) -> None:
        last = "$"
        while True:
            try:
                for eid, task_id in await self.broker.read_cancels(last, block_ms=1000):
                    last = eid
                    with contextlib.suppress(ValueError):
                        item = self.inflight.get(uuid.UUID(task_id))
                        if item is not None:
                            self._cancel(item)
            except ServiceUnavailable:
                await asyncio.sleep(1.0)
                last = "$"  # the heartbeat's row check covers what the gap hid

    async def _reconcile(self) -> None:
        await reconciler.reconcile(
            self.store, self.broker, self.opts.task_types,
            stale_after_s=self.opts.visibility_timeout_s,
            lock_ttl_s=self.opts.reconcile_interval_s, me=self.name, mine=self.inflight,
        )  # fmt: skip

    async def _autoclaim(self) -> None:
        if self.stopping.is_set():
            return
        alive: set[str] | None = None
        for stream in self._readable():
            entries = await self.broker.autoclaim(
                stream, self.name, min_idle_ms=int(self.opts.visibility_timeout_s * 1000),
                count=self.opts.batch_size,
            )  # fmt: skip
            entries = [e for e in entries if not self._mine(e[1])]
            if not entries:
                continue
            acks: list[tuple[str, str]] = []
            dead: list[tuple[str, dict[str, Any]]] = []
            msgs = self._decode(entries, acks, dead)
            rows = {
                r["task_id"]: r for r in await self.store.get_many([m.task_id for *_x, m in msgs])
            }
            to_claim, taken = [], []
            for s, eid, m in msgs:
                row = rows.get(m.task_id)
                if (
                    row is None
                    or row["attempt"] > m.attempt + 1
                    or row["status"] not in ("queued", "running")
                ):
                    acks.append((s, eid))
                elif row["status"] == "queued" and row["attempt"] == m.attempt:
                    to_claim.append((s, eid, m))
                elif row["status"] == "running" and row["attempt"] == m.attempt + 1:
                    if alive is None:
                        alive = reconciler.live_workers(
                            await self.broker.workers(), self.opts.visibility_timeout_s
                        )
                    if row["worker"] in alive:
                        continue  # its worker lives; look again later
                    try:
                        got = await self.store.takeover(m.task_id, row["attempt"], self.name)
                    except (TransitionError, TaskNotFound):
                        acks.append((s, eid))
                        continue
                    log.warning("took over task %s from %s", m.task_id, row["worker"])
                    taken.append(((s, eid, m), got))
                else:
                    acks.append((s, eid))
            claimed = await self.store.claim_many(
                [(m.task_id, m.attempt) for *_x, m in to_claim], self.name
            )
            all_rows = claimed + [g for _t, g in taken]
            await self._start(to_claim + [t for t, _g in taken], all_rows, acks, dead)

    def _mine(self, entry_id: str) -> bool:
        return any(i.entry_id == entry_id for i in self.inflight.values())

    # ---- shutdown --------------------------------------------------------------------
    async def _drain(self) -> None:
        if self.jobs:
            await asyncio.wait(set(self.jobs), timeout=self.opts.grace_s)
        left = list(self.inflight.values())
        if self.pool is not None:
            self.pool.closing = True
        for task in list(self.jobs):
            task.cancel()
        if self.jobs:
            await asyncio.gather(*self.jobs, return_exceptions=True)
        moved = []
        for item in left:
            try:
                row = await self.store.release(
                    item.task_id, item.attempt, {"released_by": f"{self.name} (shutdown)"},
                    why=f"worker {self.name} shut down before it finished (past --grace-s)",
                )  # fmt: skip
                moved.append(row)
            except (TransitionError, TaskNotFound):
                pass
        if moved:
            for r in moved:
                r["status"] = "queued"
            await self._retrying(lambda: self.broker.publish(moved), "re-enqueue")
            log.warning("released %d unfinished tasks back to the queue", len(moved))
        if left:
            await self._retrying(
                lambda: self.broker.ack([(i.stream, i.entry_id) for i in left]), "ack"
            )
        self.inflight.clear()
