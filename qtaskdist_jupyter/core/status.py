"""The task statuses and the sets the rest of the code asks about: the one home of these facts.

Apart from :mod:`.models` (SQLAlchemy) on purpose: the notebook side needs the statuses
too (handles, magics, the live table, whose front end receives them from the kernel),
and must not pay for importing SQLAlchemy to get six strings.
"""

from __future__ import annotations

import enum


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A finished task never changes status again, except by a user's retry.
FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
# The statuses a user's retry starts from (TaskStore.requeue).
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
# In declaration order, for views that list every status (counts, filters).
STATUSES: tuple[TaskStatus, ...] = tuple(TaskStatus)
# The event ``status`` sent when a finished task is deleted (not a status a row can have):
# it tells live tables to drop the row.
DELETED = "deleted"
