"""distinct callers per day: caller_days, hourly_counts.callers_day_new

Adds `caller_days` (one row per UTC day, topic and caller) and `hourly_counts.callers_day_new`
(callers first counted for the topic that day, in that hour), so that the distinct callers of
a whole day are a sum of its hours' rows. Fills them from `caller_hours` (this revision's own
snapshot of the rule; later on, `flask counts rebuild` recomputes them with the application's
code).

Revision ID: 5b2f8c1d9e47
Revises: 3e5313b61e71
Create Date: 2026-11-30 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b2f8c1d9e47'
down_revision = '3e5313b61e71'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('caller_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('topic_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('caller_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('day', 'topic_id', 'caller_hash', name=op.f('pk_caller_days'))
    )
    with op.batch_alter_table('hourly_counts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callers_day_new', sa.Integer(), server_default='0', nullable=False))
    backfill(op.get_bind())


def backfill(conn):
    """Each (day, topic, caller) once, counted in the first hour of that day it appears in."""
    hours = sa.table("caller_hours", sa.column("hour", sa.DateTime()), sa.column("topic_id"),
                     sa.column("caller_hash"))
    days = sa.table("caller_days", sa.column("day", sa.Date()), sa.column("topic_id"), sa.column("caller_hash"))
    hourly = sa.table("hourly_counts", sa.column("hour", sa.DateTime()), sa.column("topic_id"),
                      sa.column("callers_day_new"))
    first = {}
    for hour, topic_id, caller in conn.execute(sa.select(hours.c.hour, hours.c.topic_id, hours.c.caller_hash)):
        key = (hour.date(), topic_id, caller)
        first[key] = min(first.get(key, hour), hour)
    if not first:
        return
    conn.execute(days.insert(), [{"day": d, "topic_id": t, "caller_hash": c} for d, t, c in first])
    new = {}
    for (_, topic_id, _), hour in first.items():
        new[(hour, topic_id)] = new.get((hour, topic_id), 0) + 1
    conn.execute(
        hourly.update()
        .where(hourly.c.hour == sa.bindparam("h"), hourly.c.topic_id == sa.bindparam("t"))
        .values(callers_day_new=sa.bindparam("n")),
        [{"h": h, "t": t, "n": n} for (h, t), n in new.items()],
    )


def downgrade():
    with op.batch_alter_table('hourly_counts', schema=None) as batch_op:
        batch_op.drop_column('callers_day_new')
    op.drop_table('caller_days')
