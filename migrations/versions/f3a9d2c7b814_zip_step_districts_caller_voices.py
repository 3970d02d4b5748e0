"""the ZIP step and districts: line_settings.zip_step and districts, calls.entered_zip and
zip_step, zip_counts, caller_voices, voice_counts, caller_periods, period_callers

The line's script gains where it asks for the caller's ZIP code (off for existing lines),
its districts (none) and the ZIP step's wording in each language; calls gain the ZIP code
their caller entered; the new summaries (by ZIP code, one voice per caller, distinct callers
per calendar week and month) are built from the stored facts.

Revision ID: f3a9d2c7b814
Revises: c7d2e9f4a1b5
Create Date: 2026-12-01 23:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "f3a9d2c7b814"
down_revision = "c7d2e9f4a1b5"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("line_settings") as batch:
        batch.add_column(sa.Column("zip_step", sa.String(length=16), server_default="off", nullable=False))
        batch.add_column(sa.Column("districts", sa.JSON(), nullable=True))
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("entered_zip", sa.String(length=5), nullable=True))
        batch.add_column(sa.Column("zip_step", sa.Integer(), nullable=True))
        batch.create_index("ix_calls_caller_hash", ["caller_hash"])
    op.create_table(
        "caller_periods",
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("topic_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("caller_hash", sa.String(length=64), nullable=False),
        sa.Column("calls", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("period", "period_start", "topic_id", "caller_hash", name=op.f("pk_caller_periods")),
    )
    op.create_table(
        "period_callers",
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("topic_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("callers", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("period", "period_start", "topic_id", name=op.f("pk_period_callers")),
    )
    op.create_table(
        "zip_counts",
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("topic_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("zip", sa.String(length=5), nullable=False),
        *(
            sa.Column(name, sa.Integer(), server_default="0", nullable=False)
            for name in ("calls", "routed", "comments", "support", "oppose", "other")
        ),
        sa.PrimaryKeyConstraint("period", "period_start", "topic_id", "zip", name=op.f("pk_zip_counts")),
    )
    op.create_table(
        "caller_voices",
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("topic_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("caller_hash", sa.String(length=64), nullable=False),
        sa.Column("stance", sa.String(length=16), nullable=True),
        sa.Column("zip", sa.String(length=5), server_default="", nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("period", "period_start", "topic_id", "caller_hash", name=op.f("pk_caller_voices")),
    )
    op.create_index("ix_caller_voices_caller", "caller_voices", ["caller_hash", "topic_id"])
    op.create_table(
        "voice_counts",
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("topic_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("zip", sa.String(length=5), nullable=False),
        *(sa.Column(name, sa.Integer(), server_default="0", nullable=False) for name in ("support", "oppose", "other")),
        sa.PrimaryKeyConstraint("period", "period_start", "topic_id", "zip", name=op.f("pk_voice_counts")),
    )

    from models import summary
    from models.line import with_optional_wording

    # The line's row through a table of its own columns here: the model names columns later
    # revisions add.
    line_settings = sa.table(
        "line_settings", sa.column("id", sa.Integer), sa.column("wording", sa.JSON), sa.column("districts", sa.JSON)
    )
    bind = op.get_bind()
    for row_id, wording in bind.execute(sa.select(line_settings.c.id, line_settings.c.wording)).all():
        bind.execute(
            line_settings.update()
            .where(line_settings.c.id == row_id)
            .values(wording=with_optional_wording(wording or {}), districts={})
        )
    session = Session(bind=bind)
    summary.rebuild(session)
    session.flush()


def downgrade():
    op.drop_table("voice_counts")
    op.drop_index("ix_caller_voices_caller", table_name="caller_voices")
    op.drop_table("caller_voices")
    op.drop_table("zip_counts")
    op.drop_table("period_callers")
    op.drop_table("caller_periods")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_caller_hash")
        batch.drop_column("zip_step")
        batch.drop_column("entered_zip")
    with op.batch_alter_table("line_settings") as batch:
        batch.drop_column("districts")
        batch.drop_column("zip_step")
