"""legal holds: legal_holds, legal_hold_topics, legal_hold_comments, held_transcripts

A legal hold covers comments by a window of time, by topics (within an optional window) or
one by one; while it is in force nothing destroys what it covers. `held_transcripts` keeps,
out of sight, the original of a transcript redacted while a hold covered its comment, until
no hold covers it (models/holds.py).

Revision ID: 4d1a7c3e9b20
Revises: c7d2e9f4a1b5
Create Date: 2026-12-01 22:54:55.956386

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "4d1a7c3e9b20"
down_revision = "f3a9d2c7b814"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('held_transcripts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_sid', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('transcription_sid', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('transcribed_at', sa.DateTime(), nullable=False),
    sa.Column('kept_at', sa.DateTime(), nullable=False),
    sa.Column('redaction_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_held_transcripts'))
    )
    with op.batch_alter_table('held_transcripts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_held_transcripts_recording_sid'), ['recording_sid'], unique=False)

    op.create_table('legal_holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('since', sa.DateTime(), nullable=True),
    sa.Column('until', sa.DateTime(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('placed_at', sa.DateTime(), nullable=False),
    sa.Column('placed_by', sa.Integer(), nullable=True),
    sa.Column('placed_by_label', sa.String(length=254), nullable=False),
    sa.Column('released_at', sa.DateTime(), nullable=True),
    sa.Column('released_by', sa.Integer(), nullable=True),
    sa.Column('released_by_label', sa.String(length=254), nullable=True),
    sa.Column('release_note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_holds'))
    )
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legal_holds_released_at'), ['released_at'], unique=False)

    op.create_table('legal_hold_comments',
    sa.Column('hold_id', sa.Integer(), nullable=False),
    sa.Column('recording_sid', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['hold_id'], ['legal_holds.id'], name=op.f('fk_legal_hold_comments_hold_id_legal_holds')),
    sa.PrimaryKeyConstraint('hold_id', 'recording_sid', name=op.f('pk_legal_hold_comments'))
    )
    with op.batch_alter_table('legal_hold_comments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legal_hold_comments_recording_sid'), ['recording_sid'], unique=False)

    op.create_table('legal_hold_topics',
    sa.Column('hold_id', sa.Integer(), nullable=False),
    sa.Column('topic_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['hold_id'], ['legal_holds.id'], name=op.f('fk_legal_hold_topics_hold_id_legal_holds')),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_legal_hold_topics_topic_id_topics')),
    sa.PrimaryKeyConstraint('hold_id', 'topic_id', name=op.f('pk_legal_hold_topics'))
    )


def downgrade():
    op.drop_table('legal_hold_topics')
    with op.batch_alter_table('legal_hold_comments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legal_hold_comments_recording_sid'))

    op.drop_table('legal_hold_comments')
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legal_holds_released_at'))

    op.drop_table('legal_holds')
    with op.batch_alter_table('held_transcripts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_held_transcripts_recording_sid'))

    op.drop_table('held_transcripts')
