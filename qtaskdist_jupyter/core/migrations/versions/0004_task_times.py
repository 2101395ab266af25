"""A task's own start: ``claimed_at`` (a worker took it) apart from ``started_at`` (its
job began), and ``queued_at`` (when its current wait began).

Revision ID: 0004_task_times
Revises: 0003_roles
Create Date: 2026-12-07

Before this revision ``started_at`` was the claim's time, so a task held by a worker behind
others showed run time while it waited. Existing rows keep their ``started_at`` as their
claim time too, and their ``queued_at`` is their creation (see docs/message-format.md,
"Times").
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_task_times"
down_revision = "0003_roles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "tasks",
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.execute("UPDATE tasks SET claimed_at = started_at, queued_at = created_at")


def downgrade() -> None:
    op.drop_column("tasks", "queued_at")
    op.drop_column("tasks", "claimed_at")
