"""read the flags' repeat and burst rows by time: covering partial indexes, time first

`ix_caller_days_repeats` and `ix_caller_hours_repeats` (the rows of a caller who called more
than once that day or hour) led with `calls`, so a window's rows were found by scanning every
row above the limit and reading each from the table; SQLite, which keeps no statistics, read
a narrow window by the primary key instead, every row of its days (at a million calls, 35 ms
for today and seconds for a busy day). Led by the day or hour and holding every column the
rules read, either window is a range of the partial index and nothing else.

Revision ID: b7d2e4a9c1f6
Revises: a1c7e5f3b9d2
Create Date: 2026-12-03 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b7d2e4a9c1f6"
down_revision = "a1c7e5f3b9d2"
branch_labels = None
depends_on = None

REPEATED = sa.text("calls > 1")


def make(table: str, name: str, columns: list[str]) -> None:
    op.drop_index(name, table_name=table)
    op.create_index(name, table, columns, sqlite_where=REPEATED, postgresql_where=REPEATED)


def upgrade():
    make("caller_days", "ix_caller_days_repeats", ["day", "calls", "topic_id", "caller_hash"])
    make("caller_hours", "ix_caller_hours_repeats", ["hour", "calls", "topic_id", "caller_hash"])


def downgrade():
    make("caller_days", "ix_caller_days_repeats", ["calls", "day"])
    make("caller_hours", "ix_caller_hours_repeats", ["calls", "hour"])
