"""Result arrays out of the row: zstd-compressed .npy bytes in chunks.

Revision ID: 0002_results
Revises: 0001
Create Date: 2026-11-29

Why a table of ``bytea`` chunks and not large objects: the chunks go with their task
(``ON DELETE CASCADE``; large objects would need ``lo_unlink`` or vacuumlo for every
deleted task), they are written with one COPY and read one indexed row at a time with
plain statements (no ``lo_open`` transaction around a stream, which pgbouncer's
transaction pooling breaks), and the same grants cover them as the tasks table.
See docs/message-format.md ("Large results").
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_results"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_result_chunks",
        sa.Column("task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", postgresql.BYTEA(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "attempt", "name", "seq", name="pk_task_result_chunks"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.task_id"], name="fk_task_result_chunks_task", ondelete="CASCADE"
        ),
    )
    # The chunks are zstd frames already: TOAST's pglz would only spend CPU on them.
    op.execute("ALTER TABLE task_result_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("task_result_chunks")
