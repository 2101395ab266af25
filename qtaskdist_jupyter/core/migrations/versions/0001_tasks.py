"""Create the tasks table.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "'pending', 'queued', 'running', 'completed', 'failed', 'cancelled'"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column(
            "task_id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "meta_data",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("owner", sa.String(255), server_default="", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("batch_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(64)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_tasks_status_valid"),
        sa.CheckConstraint("retry_count >= 0 AND max_retries >= 0", name="ck_tasks_retries_nonneg"),
    )
    op.create_index("ix_tasks_owner_created", "tasks", ["owner", "created_at", "task_id"])
    op.create_index("ix_tasks_owner_status_created", "tasks", ["owner", "status", "created_at"])
    op.create_index(
        "ix_tasks_batch", "tasks", ["batch_id"], postgresql_where=sa.text("batch_id IS NOT NULL")
    )
    op.create_index(
        "ix_tasks_active",
        "tasks",
        ["status", "scheduled_for"],
        postgresql_where=sa.text("status IN ('pending', 'queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("tasks")
