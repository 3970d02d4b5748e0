"""topics.public: whether a topic is shown on the public tally

Every topic is shown unless an admin hides it (the console's Topics page).

Revision ID: b3f1a7c9d2e4
Revises: f3a9b2c7d4e1
Create Date: 2026-12-01 23:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3f1a7c9d2e4'
down_revision = 'f3a9b2c7d4e1'
branch_labels = None
depends_on = None


def upgrade():
    # In place on SQLite too (ALTER TABLE ADD COLUMN): a batch copy would drop `topics`,
    # which `choices` and the summaries refer to.
    op.add_column('topics', sa.Column('public', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    op.execute("ALTER TABLE topics DROP COLUMN public")  # in place on SQLite too (3.35+)
