"""Signed webhooks: a job's webhook and events filter, each user's signing secret, and every
delivery attempt.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('webhook_events', sa.String(length=32), nullable=True))
    op.create_table('webhook_secrets',
    sa.Column('user_id', _BIG_ID, nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('previous_secret', sa.String(length=64), nullable=True),
    sa.Column('previous_until', _TIMESTAMP, nullable=True),
    sa.Column('created_at', _TIMESTAMP, nullable=False),
    sa.Column('rotated_at', _TIMESTAMP, nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                            name=op.f('fk_webhook_secrets_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_webhook_secrets'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', _BIG_ID, nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('event', sa.Enum('start', 'completed', name='webhook_event',
                               create_constraint=True), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'delivered', 'failed', 'gone', 'refused', 'gave_up',
                                name='webhook_delivery_status', create_constraint=True),
              nullable=False),
    sa.Column('event_at', _TIMESTAMP, nullable=False),
    sa.Column('next_attempt_at', _TIMESTAMP, nullable=True),
    sa.Column('published_at', _TIMESTAMP, nullable=True),
    sa.Column('attempted_at', _TIMESTAMP, nullable=True),
    sa.Column('response_code', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=512), nullable=True),
    sa.Column('created_at', _TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'],
                            name=op.f('fk_webhook_deliveries_job_id_jobs')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                            name=op.f('fk_webhook_deliveries_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries'))
    )
    op.create_index('ix_webhook_deliveries_job', 'webhook_deliveries', ['job_id', 'id'])
    op.create_index('ix_webhook_deliveries_next', 'webhook_deliveries', ['next_attempt_at'])


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_secrets')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('webhook_events')
        batch_op.drop_column('webhook')
