"""Function Compute: the path a job runs on, and what its invocations cost.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 23:29:25.830275
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('path', sa.String(length=16), nullable=False, server_default='dashscope'))
        batch_op.add_column(sa.Column('compute_cost', sa.Numeric(precision=18, scale=8), nullable=False, server_default='0'))
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('compute_cost', sa.Numeric(precision=18, scale=8), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('compute_cost')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('compute_cost')
        batch_op.drop_column('path')

