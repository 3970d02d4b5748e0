"""a draft script beside the live one, published versions, and test calls

`line_settings.draft` holds the script staff are editing (null: the same as the live one) and
`draft_revision` counts its edits, so each process rereads the draft only when it changed.
`script_versions` keeps every published script whole, so any can be published again.
`calls.is_test` marks a call played from the console's "Try the line" page: stored like any
other call, never counted.

Revision ID: f3a8d6c2b190
Revises: d4e8b2f6a9c1
Create Date: 2026-12-01 23:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3a8d6c2b190'
down_revision = 'd4e8b2f6a9c1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('line_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('draft', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('draft_revision', sa.Integer(), server_default='0', nullable=False))
    op.create_table('script_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=False),
    sa.Column('published_by', sa.String(length=254), nullable=False),
    sa.Column('republished_from', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_script_versions')),
    sa.UniqueConstraint('version', name=op.f('uq_script_versions_version'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_test', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('is_test')
    op.drop_table('script_versions')
    with op.batch_alter_table('line_settings', schema=None) as batch_op:
        batch_op.drop_column('draft_revision')
        batch_op.drop_column('draft')

