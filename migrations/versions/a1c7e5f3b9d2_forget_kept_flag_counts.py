"""forget the kept flag counts: "Try the line" calls no longer make a burst or a repeat

A number's "Try the line" calls were read with its real ones when finding bursts and repeats,
so a test call could flag real calls beside it. The flags now leave test calls out; the
figures kept for past days (kind "flagged") were computed the old way, and are forgotten so
that each is counted again, the new way, the next time it is asked for. Nothing else is kept
by kind "flagged"; downgrading forgets them again (the old code counts them its way).

Revision ID: a1c7e5f3b9d2
Revises: e4f1a7c2d8b3
Create Date: 2026-12-03 08:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "a1c7e5f3b9d2"
down_revision = "e4f1a7c2d8b3"
branch_labels = None
depends_on = None


def forget_kept_flags() -> None:
    op.execute(sa.text("DELETE FROM kept_counts WHERE kind = 'flagged'"))


def upgrade():
    forget_kept_flags()


def downgrade():
    forget_kept_flags()
