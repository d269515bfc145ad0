"""Wanx task polling: upstream status, poll count and the next action a job is owed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 22:33:01.205889
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upstream_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('polls', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_action_at', TIMESTAMP, nullable=True))
        batch_op.create_index('ix_jobs_next_action_at', ['next_action_at'], unique=False)

def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_next_action_at')
        batch_op.drop_column('next_action_at')
        batch_op.drop_column('polls')
        batch_op.drop_column('upstream_status')

