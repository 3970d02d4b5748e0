"""an index on caller_hours by topic and caller

When a call stops counting (a call that records a prompt by phone becomes a test call), the
writer looks up the earliest hour each of its callers has left on a topic: without this
index, a scan of every caller's hours.

Revision ID: c5e1a8d3f207
Revises: a6d2f9c4e1b7
Create Date: 2026-12-02 03:20:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c5e1a8d3f207'
down_revision = 'a6d2f9c4e1b7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_caller_hours_caller', 'caller_hours', ['topic_id', 'caller_hash', 'hour'])


def downgrade():
    op.drop_index('ix_caller_hours_caller', table_name='caller_hours')
