"""tally_receipts: the signed daily receipts of the count, append-only

Triggers refuse every UPDATE and DELETE of a receipt, on SQLite and PostgreSQL alike.

Revision ID: d4e8b2f6a9c1
Revises: b3f1a7c9d2e4
Create Date: 2026-12-01 23:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4e8b2f6a9c1'
down_revision = 'b3f1a7c9d2e4'
branch_labels = None
depends_on = None

REFUSAL = "a published receipt is never changed or deleted"


def upgrade():
    op.create_table('tally_receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('previous', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('made_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tally_receipts')),
    sa.UniqueConstraint('hash', name=op.f('uq_tally_receipts_hash')),
    sa.UniqueConstraint('previous', name=op.f('uq_tally_receipts_previous'))
    )
    with op.batch_alter_table('tally_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tally_receipts_day'), ['day'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tally_receipts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER tally_receipts_append_only BEFORE UPDATE OR DELETE ON tally_receipts "
            "FOR EACH ROW EXECUTE FUNCTION tally_receipts_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER tally_receipts_no_{event.lower()} BEFORE {event} ON tally_receipts "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tally_receipts_append_only ON tally_receipts")
        op.execute("DROP FUNCTION tally_receipts_append_only()")
    with op.batch_alter_table('tally_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tally_receipts_day'))
    op.drop_table('tally_receipts')
