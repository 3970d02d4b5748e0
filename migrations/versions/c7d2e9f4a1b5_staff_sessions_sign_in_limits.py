"""signed-in browsers and failed sign-in counts: staff_sessions, sign_in_limits

`staff_sessions` holds one row per signed-in browser (the SHA-256 of the key its cookie
carries), so that signing out ends the session on the server. `sign_in_limits` counts failed
sign-ins per address, account and pair of both, for the throttle, in the database that every
worker and instance shares. Browsers signed in before this revision sign in again.

Revision ID: c7d2e9f4a1b5
Revises: e2b7c9d4a5f1
Create Date: 2026-12-01 20:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c7d2e9f4a1b5'
down_revision = 'e2b7c9d4a5f1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('staff_sessions',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_staff_sessions'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_sessions_user_id'), ['user_id'], unique=False)
    op.create_table('sign_in_limits',
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(), nullable=False),
    sa.Column('last_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_sign_in_limits'))
    )
    with op.batch_alter_table('sign_in_limits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sign_in_limits_last_at'), ['last_at'], unique=False)


def downgrade():
    with op.batch_alter_table('sign_in_limits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sign_in_limits_last_at'))
    op.drop_table('sign_in_limits')
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_staff_sessions_started_at'))
    op.drop_table('staff_sessions')
