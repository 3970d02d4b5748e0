"""less written per call: calls.topics and three indexes another index covers

`calls.topics` counted the distinct topics a call chose, so that the writer could tell a
call's first topic (the one that routes it); the writer now counts the call's `call_topics`
rows, which it reads anyway, and no longer updates every call's row once more for it.

`ix_recordings_created_at`, `ix_recordings_topic_id` and `ix_transcriptions_recording_sid`
are each the first columns of another index (`ix_recordings_created_at_id`,
`ix_recordings_topic_id_created_at_id`, the unique (recording_sid, source)), which serves
every query they served; each cost an entry more for every comment written.

The column is dropped with `ALTER TABLE … DROP COLUMN` on both databases (SQLite 3.35 and
later), not by copying the table.

Revision ID: e4f1a7c2d8b3
Revises: b7e4c1d9a2f6
Create Date: 2026-12-03 05:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "e4f1a7c2d8b3"
down_revision = "b7e4c1d9a2f6"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_recordings_created_at", table_name="recordings")
    op.drop_index("ix_recordings_topic_id", table_name="recordings")
    op.drop_index("ix_transcriptions_recording_sid", table_name="transcriptions")
    op.drop_column("calls", "topics")


def downgrade():
    op.add_column("calls", sa.Column("topics", sa.Integer(), server_default="0", nullable=False))
    calls = sa.table("calls", sa.column("call_sid"), sa.column("topics"))
    pairs = sa.table("call_topics", sa.column("call_sid"))
    chosen = sa.select(sa.func.count()).select_from(pairs).where(pairs.c.call_sid == calls.c.call_sid)
    op.get_bind().execute(calls.update().values(topics=chosen.scalar_subquery()))
    op.create_index("ix_transcriptions_recording_sid", "transcriptions", ["recording_sid"])
    op.create_index("ix_recordings_topic_id", "recordings", ["topic_id"])
    op.create_index("ix_recordings_created_at", "recordings", ["created_at"])
