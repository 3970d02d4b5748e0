"""figures of past days kept: hour_changes, kept_counts

`hour_changes` counts, per UTC hour, the writer's batches that changed a fact of a call that
started in that hour; `kept_counts` keeps figures computed from the facts (flags per day,
distinct callers inside a district) with the sum of those changes they were computed at
(models/kept_counts.py). Both start empty: no figure is kept yet, and an hour without a row
has had no change counted, which is what a kept figure's stamp of 0 says.

Revision ID: b7e4c1d9a2f6
Revises: c5e1a8d3f207
Create Date: 2026-12-02 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b7e4c1d9a2f6"
down_revision = "c5e1a8d3f207"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "hour_changes",
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("changes", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_hour_changes")),
    )
    op.create_table(
        "kept_counts",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("topic_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("part", sa.String(length=32), server_default="", nullable=False),
        sa.Column("value", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stamp", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "topic_id", "part", name=op.f("pk_kept_counts")),
    )


def downgrade():
    op.drop_table("kept_counts")
    op.drop_table("hour_changes")
