"""``GET tasks/resolve``: the one task or batch id of the asker that starts with the
digits given (core/short_ids.py), so the magics take the 8 characters the tables show.

Owner-scoped like every read: another user's ids are never candidates. Its two reads
(``TaskStore.ids_between``) are range scans (core/short_ids.id_range) of the tasks
table's primary key and of its batch index, each stopped past :data:`MATCH_CAP` rows.
"""

from __future__ import annotations

import uuid
from typing import Literal, TypedDict

from qtaskdist_jupyter.core.errors import AmbiguousId, TaskNotFound
from qtaskdist_jupyter.core.short_ids import id_range
from qtaskdist_jupyter.core.store.store import TaskStore

Kind = Literal["task", "batch"]
TASK: Kind = "task"
BATCH: Kind = "batch"
# Candidates counted per kind: past this, "more than" it.
MATCH_CAP = 10
_WHAT = {None: "tasks and batches", "task": "tasks", "batch": "batches"}


class Resolved(TypedDict):
    """The answer of GET tasks/resolve: the digits asked for, and the one id they start."""

    prefix: str
    kind: Kind
    id: str


async def candidates(
    store: TaskStore, owner: str, digits: str, kind: Kind | None
) -> list[tuple[Kind, uuid.UUID]]:
    """(kind, id) of ``owner``'s task ids and batch ids that start with ``digits``
    (only those of ``kind`` when given), up to MATCH_CAP + 1 of each kind."""
    lo, hi = id_range(digits)
    found: list[tuple[Kind, uuid.UUID]] = []
    if kind != BATCH:
        ids = await store.ids_between(owner, lo, hi, column="task_id", limit=MATCH_CAP + 1)
        found.extend((TASK, i) for i in ids)
    if kind != TASK:
        ids = await store.ids_between(owner, lo, hi, column="batch_id", limit=MATCH_CAP + 1)
        found.extend((BATCH, i) for i in ids)
    return found


def resolved(digits: str, kind: Kind | None, found: list[tuple[Kind, uuid.UUID]]) -> Resolved:
    """The answer for one candidate: ``{"prefix", "kind", "id"}``; 404 for none (as for a
    task that is not yours), 422 ``ambiguous_id`` naming how many for several."""
    what = _WHAT[kind]
    if not found:
        raise TaskNotFound(f"none of your {what} has an id starting with {digits}", prefix=digits)
    if len(found) > 1:
        capped = any(sum(k == each for k, _ in found) > MATCH_CAP for each in (TASK, BATCH))
        n = len(found)
        count = f"more than {MATCH_CAP}" if capped else str(n)
        raise AmbiguousId(
            f"{digits} starts the ids of {count} of your {what}; give more of its characters",
            field="prefix",
            prefix=digits,
            matches=n,
        )
    ((k, i),) = found
    return {"prefix": digits, "kind": k, "id": str(i)}
