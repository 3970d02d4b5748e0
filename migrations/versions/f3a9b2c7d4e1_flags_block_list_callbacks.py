"""flags, the block list and call-backs: calls.stir_verstat, caller_withheld, blocked;
blocked_numbers; callback_requests; topics.callback; users.callbacks

The flags (models/flags.py) are computed from stored facts: Twilio's `StirVerstat` and whether
`From` was withheld are kept per call, with indexes that let each rule start from a narrow
set. Calls stored before this revision have neither (they are never flagged `unverified`).

Revision ID: f3a9b2c7d4e1
Revises: 4d1a7c3e9b20
Create Date: 2026-12-01 23:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3a9b2c7d4e1'
down_revision = '4d1a7c3e9b20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stir_verstat', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('caller_withheld', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('blocked', sa.Boolean(), nullable=True))
        batch_op.create_index('ix_calls_caller_hash_started_at', ['caller_hash', 'started_at'], unique=False)
        batch_op.drop_index('ix_calls_caller_hash')  # the index above serves its queries too
        batch_op.create_index('ix_calls_stir_verstat_started_at', ['stir_verstat', 'started_at'], unique=False)
    # Partial indexes: only the few withheld, blocked, absent or repeated rows are in them.
    op.create_index('ix_calls_withheld_started_at', 'calls', ['started_at'], unique=False,
                    sqlite_where=sa.text('caller_withheld = 1'), postgresql_where=sa.text('caller_withheld'))
    op.create_index('ix_calls_blocked_started_at', 'calls', ['started_at'], unique=False,
                    sqlite_where=sa.text('blocked = 1'), postgresql_where=sa.text('blocked'))
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index('ix_recordings_duration_created_at', ['duration', 'created_at'], unique=False)
    op.create_index('ix_recordings_absent', 'recordings', ['call_sid'], unique=False,
                    sqlite_where=sa.text("status = 'absent'"), postgresql_where=sa.text("status = 'absent'"))
    op.create_index('ix_caller_days_repeats', 'caller_days', ['calls', 'day'], unique=False,
                    sqlite_where=sa.text('calls > 1'), postgresql_where=sa.text('calls > 1'))
    op.create_index('ix_caller_hours_repeats', 'caller_hours', ['calls', 'hour'], unique=False,
                    sqlite_where=sa.text('calls > 1'), postgresql_where=sa.text('calls > 1'))
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback', sa.Boolean(), server_default='0', nullable=False))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callbacks', sa.Boolean(), server_default='0', nullable=False))

    op.create_table('blocked_numbers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caller_hash', sa.String(length=64), nullable=False),
    sa.Column('number_hint', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_by_label', sa.String(length=254), nullable=False),
    sa.Column('lifted_at', sa.DateTime(), nullable=True),
    sa.Column('lifted_by_label', sa.String(length=254), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_blocked_numbers_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blocked_numbers'))
    )
    with op.batch_alter_table('blocked_numbers', schema=None) as batch_op:
        batch_op.create_index('ix_blocked_numbers_caller_hash', ['caller_hash'], unique=False)

    op.create_table('callback_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('topic_id', sa.Integer(), nullable=True),
    sa.Column('recording_sid', sa.String(length=64), nullable=True),
    sa.Column('number_sealed', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.Column('done_by_label', sa.String(length=254), nullable=True),
    sa.Column('erased_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_callback_requests_topic_id_topics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_requests')),
    sa.UniqueConstraint('call_sid', 'step', name=op.f('uq_callback_requests_call_sid'))
    )
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_requests_call_sid'), ['call_sid'], unique=False)
        batch_op.create_index('ix_callback_requests_requested_at', ['requested_at'], unique=False)


def downgrade():
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_requests_requested_at')
        batch_op.drop_index(batch_op.f('ix_callback_requests_call_sid'))
    op.drop_table('callback_requests')
    with op.batch_alter_table('blocked_numbers', schema=None) as batch_op:
        batch_op.drop_index('ix_blocked_numbers_caller_hash')
    op.drop_table('blocked_numbers')
    # Plain ALTER TABLE (SQLite 3.35+ and PostgreSQL): a batch copy of `users` or `topics`
    # would drop a table other tables' foreign keys name.
    op.execute('ALTER TABLE users DROP COLUMN callbacks')
    op.execute('ALTER TABLE topics DROP COLUMN callback')
    op.drop_index('ix_caller_hours_repeats', table_name='caller_hours')
    op.drop_index('ix_caller_days_repeats', table_name='caller_days')
    op.drop_index('ix_recordings_absent', table_name='recordings')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index('ix_recordings_duration_created_at')
    op.drop_index('ix_calls_blocked_started_at', table_name='calls')
    op.drop_index('ix_calls_withheld_started_at', table_name='calls')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_stir_verstat_started_at')
        batch_op.drop_index('ix_calls_caller_hash_started_at')
        batch_op.create_index('ix_calls_caller_hash', ['caller_hash'], unique=False)
        batch_op.drop_column('blocked')
        batch_op.drop_column('caller_withheld')
        batch_op.drop_column('stir_verstat')
