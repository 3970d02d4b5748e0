"""recorded prompts are part of the script: drafted, published and kept with each version

`line_settings.prompts` ({language: {line key: SHA-256}}) is the recorded prompts the live
script plays; the draft and each kept version carry theirs as the document's `prompts`.
`prompts` becomes the record of every recording made for a line (one row per language, key
and audio), no longer the one each line plays.

Data: the prompts that played before go into the live script, the draft (they played on it
too) and every kept version (publishing one again brought them along, so it still does).
Downgrading keeps, per line, only the live script's recording.

Revision ID: a6d2f9c4e1b7
Revises: f3a8b6c2d917
Create Date: 2026-12-02 03:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a6d2f9c4e1b7'
down_revision = 'f3a8b6c2d917'
branch_labels = None
depends_on = None

prompts = sa.table(
    'prompts',
    sa.column('id', sa.Integer),
    sa.column('language', sa.String),
    sa.column('key', sa.String),
    sa.column('digest', sa.String),
)
line_settings = sa.table(
    'line_settings',
    sa.column('id', sa.Integer),
    sa.column('draft', sa.JSON),
    sa.column('prompts', sa.JSON),
)
script_versions = sa.table('script_versions', sa.column('id', sa.Integer), sa.column('document', sa.JSON))


def upgrade():
    with op.batch_alter_table('line_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prompts', sa.JSON(), nullable=True))
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_constraint('uq_prompts_language_key', type_='unique')
        batch_op.create_unique_constraint('uq_prompts_language_key_digest', ['language', 'key', 'digest'])

    conn = op.get_bind()
    playing = {}
    for language, key, digest in conn.execute(sa.select(prompts.c.language, prompts.c.key, prompts.c.digest)):
        playing.setdefault(language, {})[key] = digest
    for row_id, draft in conn.execute(sa.select(line_settings.c.id, line_settings.c.draft)).all():
        values = {'prompts': playing}
        if draft is not None:
            values['draft'] = {**draft, 'prompts': playing}
        conn.execute(sa.update(line_settings).where(line_settings.c.id == row_id).values(**values))
    for row_id, document in conn.execute(sa.select(script_versions.c.id, script_versions.c.document)).all():
        if 'prompts' not in document:
            document = {**document, 'prompts': playing}
            conn.execute(sa.update(script_versions).where(script_versions.c.id == row_id).values(document=document))


def downgrade():
    conn = op.get_bind()
    live = conn.execute(sa.select(line_settings.c.prompts).where(line_settings.c.id == 1)).scalar() or {}
    for row_id, language, key, digest in conn.execute(
        sa.select(prompts.c.id, prompts.c.language, prompts.c.key, prompts.c.digest)
    ).all():
        if live.get(language, {}).get(key) != digest:
            conn.execute(sa.delete(prompts).where(prompts.c.id == row_id))
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_constraint('uq_prompts_language_key_digest', type_='unique')
        batch_op.create_unique_constraint('uq_prompts_language_key', ['language', 'key'])
    with op.batch_alter_table('line_settings', schema=None) as batch_op:
        batch_op.drop_column('prompts')
