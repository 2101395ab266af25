"""The start-time rules shared by the worker and the store (core/task_times.py): a finished
attempt always has a start, and a late start write changes nothing it shouldn't."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qtaskdist_jupyter.core.status import TaskStatus
from qtaskdist_jupyter.core.task_times import (
    attempt_start,
    carried_start,
    start_at_end,
    start_write_applies,
)

T0 = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
END = T0 + timedelta(seconds=20)


def test_an_attempt_reports_its_jobs_own_start_first() -> None:
    assert attempt_start(T0, T0 + timedelta(seconds=1), END, 3.0) == T0


def test_without_a_job_start_the_rows_start_serves() -> None:
    assert attempt_start(None, T0, END, 3.0) == T0


def test_with_no_start_at_all_the_end_less_the_run_time_serves() -> None:
    assert attempt_start(None, None, END, 16.0) == END - timedelta(seconds=16)
    assert attempt_start(None, None, END, -1.0) == END  # never after its end


def test_the_row_keeps_its_start_else_takes_the_carried_one() -> None:
    assert start_at_end(T0, END) == T0
    # The completion was written before the batch that stamps the start: no start lost.
    assert start_at_end(None, T0) == T0
    assert start_at_end(None, None) is None


@pytest.mark.parametrize(
    ("status", "attempt", "started", "applies"),
    [
        (TaskStatus.RUNNING, 2, None, True),
        (TaskStatus.RUNNING, 2, T0, False),  # stamped already
        (TaskStatus.RUNNING, 3, None, False),  # taken over: another attempt
        (TaskStatus.COMPLETED, 2, None, False),  # the completion went first
        (TaskStatus.FAILED, 2, None, False),
        (TaskStatus.CANCELLED, 2, None, False),
        (TaskStatus.QUEUED, 2, None, False),  # released or retried: never moved back
    ],
)
def test_a_start_write_applies_only_to_the_running_unstamped_attempt(
    status: TaskStatus, attempt: int, started: datetime | None, applies: bool
) -> None:
    row = {"status": status.value, "attempt": attempt, "started_at": started}
    assert start_write_applies(row, 2) is applies


def test_the_carried_start_is_the_last_attempts() -> None:
    meta = {
        "attempts": [
            {"attempt": 1, "started_at": (T0 - timedelta(minutes=5)).isoformat()},
            {"attempt": 2, "started_at": T0.isoformat()},
        ]
    }
    assert carried_start(meta) == T0
    assert carried_start({"attempts": [{"attempt": 1, "started_at": None}]}) is None
    assert carried_start({}) is None
