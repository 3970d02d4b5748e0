"""recorded prompts, codes to record them by phone, and each transcript's engine

`prompt_audio` keeps each prompt file once by its SHA-256 (and its public name), `prompts`
attaches one to a wording line (language, key), `prompt_codes` holds the one-time codes (as
HMACs) that let staff record a prompt by phone, `prompt_takes` the takes recorded so, and
`prompt_code_failures` the wrong codes entered. `transcriptions.engine` names what made a
transcript (Twilio, or the offline transcriber and its model).

Revision ID: f3a8b6c2d917
Revises: f3a8d6c2b190
Create Date: 2026-12-01 23:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3a8b6c2d917'
down_revision = 'f3a8d6c2b190'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('prompt_audio',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=32), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_audio')),
    sa.UniqueConstraint('digest', name=op.f('uq_prompt_audio_digest')),
    sa.UniqueConstraint('name', name=op.f('uq_prompt_audio_name'))
    )
    op.create_table('prompts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompts')),
    sa.UniqueConstraint('language', 'key', name='uq_prompts_language_key')
    )
    op.create_table('prompt_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('call_sid', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_prompt_codes_code_hash'))
    )
    op.create_table('prompt_takes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_sid', sa.String(length=64), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('code_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('media_url', sa.String(length=512), nullable=True),
    sa.Column('duration', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_takes')),
    sa.UniqueConstraint('recording_sid', name=op.f('uq_prompt_takes_recording_sid'))
    )
    op.create_table('prompt_code_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_code_failures'))
    )
    with op.batch_alter_table('prompt_code_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompt_code_failures_at'), ['at'], unique=False)
    with op.batch_alter_table('transcriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('engine', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('transcriptions', schema=None) as batch_op:
        batch_op.drop_column('engine')
    with op.batch_alter_table('prompt_code_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prompt_code_failures_at'))
    op.drop_table('prompt_code_failures')
    op.drop_table('prompt_takes')
    op.drop_table('prompt_codes')
    op.drop_table('prompts')
    op.drop_table('prompt_audio')
