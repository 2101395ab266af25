"""TaskReads: the read side of :class:`~.service.TaskService` (rows, pages, counts, result
arrays, live events and the operator views); a mixin it inherits.

Nothing here writes: each verb reads the store or the broker, and hides from a user what
only an operator may see (access.Redactor).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping

from qtaskdist_jupyter.core.broker.broker import Broker
from qtaskdist_jupyter.core.config import Settings
from qtaskdist_jupyter.core.jsontypes import JsonObject
from qtaskdist_jupyter.core.queue import EventPage, TaskQueue
from qtaskdist_jupyter.core.store.shapes import TaskRecord
from qtaskdist_jupyter.core.store.store import TaskStore
from qtaskdist_server.api import access, fleet, listing, short_ids
from qtaskdist_server.api.listing import columns_for
from qtaskdist_server.api.params import ListParams


class TaskReads:
    """The GET verbs of the REST API; mixed into :class:`~.service.TaskService`."""

    store: TaskStore
    broker: Broker
    queue: TaskQueue
    settings: Settings
    redactor: access.Redactor

    async def get(self, task_id: uuid.UUID, owner: str) -> TaskRecord:
        return await self.store.get(task_id, owner)

    async def list_tasks(
        self, owner: str, q: ListParams, *, operator: bool
    ) -> tuple[list[Mapping[str, object]], str | None]:
        """GET tasks: one page of rows holding the columns of ``q.view`` (as ``operator``
        or a user sees them: :meth:`viewed`), and the next page's cursor. A page whose
        fields would pass max_page_bytes is refused (422) before they are read, naming the
        ``limit`` that fits."""
        columns = columns_for(q.view)
        if listing.measured(q.view):
            cap = self.settings.limits.max_page_bytes
            await listing.check_page(self.store, q.view, cap, owner=owner, **q.filters())
        if not operator and {"worker", "meta_data", "error"} & set(columns):
            columns = [*columns, "worker", "meta_data"]  # what redaction must know
        rows, nxt = await self.store.list(owner=owner, columns=columns, **q.filters())
        return [self.viewed(r, operator=operator) for r in rows], nxt

    def viewed(self, row: Mapping[str, object], *, operator: bool) -> Mapping[str, object]:
        """A task row as an operator sees it (all of it) or a user (access.Redactor: no
        worker hosts or pids)."""
        return row if operator else self.redactor.row(row)

    async def counts(self, owner: str, batch_id: uuid.UUID | None = None) -> dict[str, int]:
        return await self.store.counts(owner=owner, batch_id=batch_id)

    async def resolve(
        self, owner: str, digits: str, kind: short_ids.Kind | None = None
    ) -> short_ids.Resolved:
        """GET tasks/resolve: the one task or batch id of ``owner`` that starts with
        ``digits`` (404 none, 422 ambiguous_id several)."""
        found = await short_ids.candidates(self.store, owner, digits, kind)
        return short_ids.resolved(digits, kind, found)

    async def array_ref(self, task_id: uuid.UUID, owner: str, name: str) -> JsonObject:
        """The reference to one stored result array (its sizes, hash and chunks)."""
        return await self.store.array_ref(task_id, owner, name)

    def iter_array(
        self, task_id: uuid.UUID, name: str, ref: JsonObject, *, npy: bool
    ) -> AsyncIterator[bytes]:
        """The array ``ref`` names, piece by piece: ``.npy`` bytes, or the stored frame."""
        return self.store.iter_array(task_id, name, ref, npy=npy)

    # ---- live events and the operator views ------------------------------------------
    async def events(
        self, after: str, *, count: int = 500, block_ms: int | None = None
    ) -> EventPage:
        """The events after ``after`` (XREAD, blocking up to block_ms), as the queue
        decoded them, and the position read up to."""
        return await self.queue.events(after, count=count, block_ms=block_ms)

    async def last_event_id(self) -> str:
        return await self.queue.last_event_id()

    async def health(self, owner: str, *, operator: bool, stale_s: float) -> fleet.Health:
        """GET health (fleet.health): the fleet's internals only for an ``operator``."""
        return await fleet.health(
            self.store, self.broker, owner, operator=operator, stale_s=stale_s
        )

    async def fleet_snapshot(self, stale_s: float) -> fleet.Snapshot:
        """One look at the fleet for GET metrics (fleet.snapshot)."""
        return await fleet.snapshot(self.store, self.broker, stale_s)
