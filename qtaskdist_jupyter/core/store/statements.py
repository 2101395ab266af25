"""The row statements that claim and start tasks for many (task_id, attempt) pairs at once,
and the columns every transition returns (used by :mod:`.transitions` and :mod:`.store`)."""

from __future__ import annotations

from sqlalchemy import ARRAY, DateTime, Integer, Uuid, and_, bindparam, case, func, or_, update

from qtaskdist_jupyter.core.models import TASKS
from qtaskdist_jupyter.core.status import TaskStatus

tasks = TASKS
S = TaskStatus
# The columns a transition returns: what a worker needs to run the task and write events.
LIGHT = (
    tasks.c.task_id,
    tasks.c.task_type,
    tasks.c.status,
    tasks.c.owner,
    tasks.c.attempt,
    tasks.c.batch_id,
    tasks.c.payload,
    tasks.c.retry_count,
    tasks.c.max_retries,
    tasks.c.created_at,
    tasks.c.queued_at,
    tasks.c.claimed_at,
    tasks.c.started_at,
    tasks.c.meta_data,
)

# The columns an event is written from (broker.packing.pack_rows).
EVENT = (
    tasks.c.task_id,
    tasks.c.task_type,
    tasks.c.status,
    tasks.c.owner,
    tasks.c.attempt,
    tasks.c.batch_id,
)

# queued → running for (task_id, attempt) pairs passed as two arrays: the SQL text is the
# same for any batch size, so it is compiled once and PostgreSQL can prepare it (an IN
# list of pairs is new text for every size).
_CLAIMS = (
    func.unnest(bindparam("ids", type_=ARRAY(Uuid)), bindparam("attempts", type_=ARRAY(Integer)))
    .table_valued("id", "attempt")
    .render_derived(name="claims")
)
_QUEUED = tasks.c.status == S.QUEUED.value
# A claim is retried when its connection drops before its answer came (the worker's
# until_up), though its first try may have committed: the retry then finds the row this
# very claim moved (running, the next attempt, this worker, not started) and answers it
# again, unchanged, instead of nothing, which would leave the row running with no one
# holding it until a reconcile released it to run again. The worker runs no row it holds
# already (Worker.start), so a duplicate message matching this way runs nothing twice.
_CLAIM = (
    update(tasks)
    .where(
        tasks.c.task_id == _CLAIMS.c.id,
        or_(
            and_(
                tasks.c.attempt == _CLAIMS.c.attempt,
                _QUEUED,
                or_(tasks.c.scheduled_for.is_(None), tasks.c.scheduled_for <= func.now()),
            ),
            and_(
                tasks.c.attempt == _CLAIMS.c.attempt + 1,
                tasks.c.status == S.RUNNING.value,
                tasks.c.worker == bindparam("worker"),
                tasks.c.started_at.is_(None),
            ),
        ),
    )
    .values(
        status=S.RUNNING.value,
        attempt=case((_QUEUED, tasks.c.attempt + 1), else_=tasks.c.attempt),
        claimed_at=case((_QUEUED, func.now()), else_=tasks.c.claimed_at),
        started_at=None,
        worker=bindparam("worker"),
        updated_at=func.now(),
    )
    .returning(*LIGHT)
)

# running (claimed) → running with ``started_at``: the tasks' unit began in a job process.
# Only a row still running that attempt with no start yet (task_times.start_write_applies):
# a start written after the attempt ended (its completion raced ahead) changes nothing.
_STARTS = (
    func.unnest(
        bindparam("ids", type_=ARRAY(Uuid)),
        bindparam("attempts", type_=ARRAY(Integer)),
        bindparam("started", type_=ARRAY(DateTime(timezone=True))),
    )
    .table_valued("id", "attempt", "started")
    .render_derived(name="starts")
)
_START = (
    update(tasks)
    .where(
        tasks.c.task_id == _STARTS.c.id,
        tasks.c.attempt == _STARTS.c.attempt,
        tasks.c.status == S.RUNNING.value,
        tasks.c.started_at.is_(None),
    )
    .values(started_at=_STARTS.c.started, updated_at=func.now())
    # What the start's event needs, not LIGHT: a worker stamps every task it runs, and
    # decoding each one's payload and meta again cost its main process CPU per task.
    .returning(*EVENT)
)
