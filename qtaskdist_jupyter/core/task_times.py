"""When an attempt started, decided once for the worker and the store (issue 26, point 3).

A worker stamps ``started_at`` when a claimed task's unit reaches a job process, in batches
(worker/qtaskdist_worker/starts.py), while its completions are written by another batch
(settle.py). The two writes race for a fast task; these rules make the order not matter:

- the end of an attempt always carries its own start (:func:`attempt_start`), and the row
  keeps the start it already has, else takes that one (:func:`start_at_end`, the SQL's
  ``COALESCE(started_at, <carried start>)``);
- a start write applies only to the row still running that attempt with no start yet
  (:func:`start_write_applies`): a late one never touches a finished, retried, cancelled
  or taken-over row, and never moves a status.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from qtaskdist_jupyter.core.jsontypes import JsonMap
from qtaskdist_jupyter.core.status import TaskStatus


def attempt_start(
    job_start: datetime | None,
    recorded_start: datetime | None,
    finished: datetime,
    run_time_s: float,
) -> datetime:
    """The start an ending attempt reports: its job's own start (the worker's clock when its
    unit reached a job process), else the start already in its row, else its end less its
    run time. A finished attempt always has one."""
    if job_start is not None:
        return job_start
    if recorded_start is not None:
        return recorded_start
    return finished - timedelta(seconds=max(run_time_s, 0.0))


def start_at_end(recorded: datetime | None, carried: datetime | None) -> datetime | None:
    """The ``started_at`` a row ends an attempt with: the one it has, else the one the
    attempt's end carries (what ``COALESCE(tasks.started_at, v.started)`` writes)."""
    return recorded if recorded is not None else carried


def start_write_applies(row: Mapping[str, object], attempt: int) -> bool:
    """Whether a start write for ``attempt`` changes ``row`` (what the start statement's
    WHERE clause admits): the row is running that very attempt and has no start yet."""
    return (
        row.get("status") == TaskStatus.RUNNING.value
        and row.get("attempt") == attempt
        and row.get("started_at") is None
    )


def carried_start(meta: JsonMap) -> datetime | None:
    """The start an attempt's end carries in its ``meta`` (the last ``attempts`` entry,
    written by the worker's outcomes.profile), or None."""
    attempts = meta.get("attempts")
    last = attempts[-1] if isinstance(attempts, list) and attempts else None
    started = last.get("started_at") if isinstance(last, dict) else None
    return datetime.fromisoformat(started) if isinstance(started, str) and started else None
