"""Embedding calls are jobs of their own kind (common/jobs/embedding.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ('chat', 'image')
NEW = ('chat', 'image', 'embedding')
COLUMNS = (('jobs', 'job_kind'), ('usage_records', 'usage_kind'))


def _retype(kinds_from: tuple[str, ...], kinds_to: tuple[str, ...]) -> None:
    for table, name in COLUMNS:
        # Batch mode: SQLite rebuilds the table with the new CHECK; MySQL alters the ENUM.
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                'kind', existing_nullable=False,
                existing_type=sa.Enum(*kinds_from, name=name, create_constraint=True),
                type_=sa.Enum(*kinds_to, name=name, create_constraint=True))


def upgrade() -> None:
    _retype(OLD, NEW)


def downgrade() -> None:
    # Embedding calls have no kind to go back to: their rows go with it.
    usage = sa.table('usage_records', sa.column('kind', sa.String))
    jobs = sa.table('jobs', sa.column('id', sa.String), sa.column('kind', sa.String))
    charges = sa.table('job_charges', sa.column('job_id', sa.String))
    op.execute(usage.delete().where(usage.c.kind == 'embedding'))
    op.execute(charges.delete().where(charges.c.job_id.in_(
        sa.select(jobs.c.id).where(jobs.c.kind == 'embedding'))))
    op.execute(jobs.delete().where(jobs.c.kind == 'embedding'))
    _retype(NEW, OLD)
