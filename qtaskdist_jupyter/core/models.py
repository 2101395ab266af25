"""The ``tasks`` table. The statuses it allows live in :mod:`.status`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qtaskdist_jupyter.core.jsontypes import JsonValue

# TaskStatus and FINISHED are imported from here by callers that already use the table.
from qtaskdist_jupyter.core.status import FINISHED, TaskStatus

__all__ = ["FINISHED", "Base", "Task", "TaskStatus"]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _sql_list(statuses: list[TaskStatus]) -> str:
    return ", ".join(f"'{s.value}'" for s in statuses)


class Task(Base):
    __tablename__ = "tasks"

    # The seed's columns.
    task_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    task_type: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=TaskStatus.PENDING.value
    )
    # JSON objects (jsontypes.JsonObject, spelled out: SQLAlchemy evaluates these).
    payload: Mapped[dict[str, JsonValue]] = mapped_column(JSONB, nullable=False)
    result: Mapped[dict[str, JsonValue] | None] = mapped_column(JSONB, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retry_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    meta_data: Mapped[dict[str, JsonValue]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )

    # What the design adds.
    owner: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    # Bumped by every claim; completion is fenced on it so a stale worker can't finish a
    # task that someone else now owns.
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    batch_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    name: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), nullable=False, server_default=text("'{}'::varchar[]")
    )
    # When its current wait began: creation, a user's retry, or an automatic retry's due time.
    queued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # When a worker claimed it (its attempt began) and when its job began to run: a claimed
    # task waits behind the worker's other tasks until its unit starts in a job process.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        CheckConstraint(f"status IN ({_sql_list(list(TaskStatus))})", name="status_valid"),
        CheckConstraint("retry_count >= 0 AND max_retries >= 0", name="retries_nonneg"),
        # Keyset pagination is (created_at DESC, task_id DESC) within an owner.
        Index("ix_tasks_owner_created", "owner", "created_at", "task_id"),
        Index("ix_tasks_owner_status_created", "owner", "status", "created_at"),
        Index("ix_tasks_batch", "batch_id", postgresql_where=text("batch_id IS NOT NULL")),
        # The reconciler scans the few active rows, never the finished history.
        Index(
            "ix_tasks_active",
            "status",
            "scheduled_for",
            postgresql_where=text(
                f"status IN ({_sql_list([s for s in TaskStatus if s not in FINISHED])})"
            ),
        ),
    )


def _table_of(model: type[Base]) -> Table:
    """A declarative model's Table (SQLAlchemy types ``__table__`` as any FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


# The tasks table, for the store's Core statements.
TASKS: Table = _table_of(Task)
