"""Storage per owner: the quota on stored tasks and the retention of finished ones.

Pure decisions; the statements are in :mod:`qtaskdist_jupyter.core.store.housekeeping`,
the passes in the workers' reconciler and ``qtaskdist gc`` (docs/operations.md).
"""

from __future__ import annotations

from qtaskdist_jupyter.core.errors import QuotaExceeded

# Rows one statement deletes: bounds its locks, its WAL burst and its time.
GC_BATCH = 1000
# Batches one reconciler pass deletes at most; `qtaskdist gc` goes on until none is left.
GC_BATCHES_PER_PASS = 5
# One retention pass per this many seconds in the whole fleet (a Redis lock spaces them).
GC_EVERY_S = 300.0
# What a 429 for stored tasks tells a client to wait: deleting is up to its owner.
STORED_RETRY_AFTER_S = 60


def check_stored_tasks(stored: int, adding: int, cap: int) -> None:
    """QuotaExceeded (429) when ``adding`` rows would take an owner past ``cap`` stored
    rows (every status); ``cap`` 0: no cap."""
    if cap and stored + adding > cap:
        raise QuotaExceeded(
            f"you store {stored} tasks and this request adds {adding}; the limit is {cap} "
            "(QTASKDIST_MAX_STORED_TASKS). Delete finished tasks (DELETE tasks/{id}), or "
            "wait for the retention policy to remove old ones",
            field="tasks",
            limit="stored_tasks",
            retry_after_s=STORED_RETRY_AFTER_S,
            maximum=cap,
            value=stored,
        )


def gc_due(retention_s: float) -> bool:
    """Whether a retention policy is set (0: finished tasks are kept forever)."""
    return retention_s > 0
