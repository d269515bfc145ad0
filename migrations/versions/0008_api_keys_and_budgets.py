"""API keys, spend budgets and the budget ledger (charges and per-period counters).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
MONEY = sa.Numeric(18, 8)


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('id', BIG, primary_key=True, autoincrement=True),
        sa.Column('user_id', BIG, sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False),
        sa.Column('name', sa.String(100), nullable=False),
        sa.Column('prefix', sa.String(16), nullable=False),
        sa.Column('last_four', sa.String(4), nullable=False),
        sa.Column('secret_hash', sa.String(64), nullable=False, unique=True),
        sa.Column('models', sa.JSON(), nullable=True),
        sa.Column('rpm_limit', sa.Integer(), nullable=True),
        sa.Column('tpm_limit', sa.Integer(), nullable=True),
        sa.Column('budget_amount', MONEY, nullable=True),
        sa.Column('budget_period', sa.String(8), nullable=True),
        sa.Column('expires_at', TS, nullable=True),
        sa.Column('created_at', TS, nullable=False),
        sa.Column('last_used_at', TS, nullable=True),
        sa.Column('revoked_at', TS, nullable=True),
    )
    op.create_index('ix_api_keys_user', 'api_keys', ['user_id', 'id'])
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('budget_amount', MONEY, nullable=True))
        batch_op.add_column(sa.Column('budget_period', sa.String(8), nullable=True))
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_key_id', BIG, nullable=True))
        batch_op.create_index('ix_usage_records_key_created', ['api_key_id', 'created_at'])
    op.create_table(
        'job_charges',
        sa.Column('job_id', sa.String(36), sa.ForeignKey('jobs.id'), primary_key=True),
        sa.Column('user_id', BIG, nullable=False),
        sa.Column('api_key_id', BIG, nullable=True),
        sa.Column('user_period', sa.String(12), nullable=False),
        sa.Column('key_period', sa.String(12), nullable=True),
        sa.Column('reserved', MONEY, nullable=False),
        sa.Column('reserved_tokens', sa.Integer(), nullable=False),
        sa.Column('held_user', sa.String(12), nullable=True),
        sa.Column('held_key', sa.String(12), nullable=True),
        sa.Column('cost', MONEY, nullable=True),
        sa.Column('created_at', TS, nullable=False),
        sa.Column('closed_at', TS, nullable=True),
        sa.Column('outcome', sa.String(16), nullable=True),
    )
    op.create_index('ix_job_charges_user_period', 'job_charges', ['user_id', 'user_period'])
    op.create_index('ix_job_charges_key_period', 'job_charges', ['api_key_id', 'key_period'])
    op.create_index('ix_job_charges_open', 'job_charges', ['closed_at', 'created_at'])
    op.create_table(
        'budget_counters',
        sa.Column('scope', sa.String(8), primary_key=True),
        sa.Column('owner_id', BIG, primary_key=True, autoincrement=False),
        sa.Column('period', sa.String(12), primary_key=True),
        sa.Column('spent', MONEY, nullable=True),
        sa.Column('reserved', MONEY, nullable=False),
    )


def downgrade() -> None:
    op.drop_table('budget_counters')
    op.drop_table('job_charges')
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_records_key_created')
        batch_op.drop_column('api_key_id')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('budget_period')
        batch_op.drop_column('budget_amount')
    op.drop_table('api_keys')
