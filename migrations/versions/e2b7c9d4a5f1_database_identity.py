"""A database's identity, which journals and spool files carry, so that a spool is never
replayed into a database it was not written for.

Revision ID: e2b7c9d4a5f1
Revises: c8e4a1f2d6b9
Create Date: 2026-12-01 22:00:00
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "e2b7c9d4a5f1"
down_revision = "c8e4a1f2d6b9"
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table(
        "database_identity",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.bulk_insert(table, [{"id": str(uuid.uuid4()), "created_at": datetime.now(UTC).replace(tzinfo=None)}])


def downgrade():
    op.drop_table("database_identity")
