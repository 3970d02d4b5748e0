"""comment numbers drawn in blocks: recordings.number, recording_aliases, recording_numbers

A comment's reference number is now made from `recordings.number` rather than its row id, so
that web processes can take numbers from a counter a block at a time instead of writing a
row before each `<Record>` reply. Every stored recording keeps the reference it had
(`number = id`), and the counter, a one-row table, starts above them. `recording_aliases` keeps any further number a caller was given for the
same recording.

Revision ID: a4c7e2d9b318
Revises: 5b2f8c1d9e47
Create Date: 2026-11-30 11:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a4c7e2d9b318'
down_revision = '5b2f8c1d9e47'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
    op.execute("UPDATE recordings SET number = id")
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_number'), ['number'], unique=True)
    op.create_table('recording_aliases',
    sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('recording_sid', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_recording_aliases'))
    )
    with op.batch_alter_table('recording_aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_aliases_recording_sid'), ['recording_sid'], unique=False)
    op.create_table('recording_numbers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('next_number', sa.Integer(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_recording_numbers_one_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_numbers'))
    )
    op.execute("INSERT INTO recording_numbers (id, next_number) SELECT 1, COALESCE(MAX(id), 0) + 1 FROM recordings")


def downgrade():
    """References go back to being made from row ids: numbers given since are forgotten."""
    op.drop_table('recording_numbers')
    with op.batch_alter_table('recording_aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_aliases_recording_sid'))
    op.drop_table('recording_aliases')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_number'))
        batch_op.drop_column('number')
