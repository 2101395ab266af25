"""Per-owner quotas as pure decisions: active tasks (and the priority lane they decide) and
large request bodies in flight.

The active-task decision runs twice per submission: once from the number of tasks in the
request before any circuit is checked (a cheap refusal), and once under the owner's
admission lock with the insert (TaskStore.insert_admitted), which is what makes the cap
and the priority lane's bound hold under concurrent requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from qtaskdist_jupyter.core.config import Limits
from qtaskdist_jupyter.core.errors import LimitExceeded, QuotaExceeded

# What a 429 tells a client to wait: tasks finish in seconds to minutes.
QUOTA_RETRY_AFTER_S = 30
# A large body takes a second or two to arrive and be checked.
LARGE_BODY_RETRY_AFTER_S = 5


def admit(active: int, n: int, limits: Limits, field: str = "tasks") -> bool:
    """Whether ``n`` more tasks of an owner with ``active`` pending, queued or running
    ones are a small submission (priority lane: at most ``priority_max_tasks`` active,
    counting them); QuotaExceeded (429) when they would pass ``max_active_tasks``."""
    cap = limits.max_active_tasks
    if active + n > cap:
        raise QuotaExceeded(
            f"{active} of your tasks are pending, queued or running and this request "
            f"adds {n}; the limit is {cap}. Wait for some to finish, or cancel some",
            field=field,
            limit="active_tasks",
            retry_after_s=QUOTA_RETRY_AFTER_S,
            maximum=cap,
            value=active + n,
        )
    return active + n <= limits.priority_max_tasks


def check_batch_size(n: int, limits: Limits) -> None:
    """LimitExceeded (422) for a batch of more than ``max_batch_tasks`` tasks."""
    if n > limits.max_batch_tasks:
        raise LimitExceeded(
            f"{n} tasks in one batch; the limit is {limits.max_batch_tasks}",
            limit="batch_tasks",
            value=n,
            maximum=limits.max_batch_tasks,
            field="tasks",
        )


def is_large_body(declared_bytes: int | None, limits: Limits) -> bool:
    """A body counted against ``max_large_bodies``: one declared over ``large_body_bytes``
    (None: not declared, a chunked body, counted once it has grown past it)."""
    return declared_bytes is not None and declared_bytes > limits.large_body_bytes


class LargeBodies:
    """Request bodies over ``large_body_bytes`` being received or checked, per owner."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def open_of(self, owner: str) -> int:
        return self._open.get(owner, 0)

    def acquire(self, owner: str, limits: Limits) -> None:
        n = self._open.get(owner, 0)
        cap = limits.max_large_bodies
        if n >= cap:
            raise QuotaExceeded(
                f"{n} request bodies of yours over {limits.large_body_bytes} bytes are being "
                f"received or checked; the limit is {cap}. Send the next when one is answered",
                field="body",
                limit="large_bodies",
                retry_after_s=LARGE_BODY_RETRY_AFTER_S,
                maximum=cap,
            )
        self._open[owner] = n + 1

    def release(self, owner: str) -> None:
        left = self._open.get(owner, 0) - 1
        if left > 0:
            self._open[owner] = left
        else:
            self._open.pop(owner, None)

    @contextlib.contextmanager
    def hold(self, owner: str, limits: Limits) -> Iterator[None]:
        self.acquire(owner, limits)
        try:
            yield
        finally:
            self.release(owner)
