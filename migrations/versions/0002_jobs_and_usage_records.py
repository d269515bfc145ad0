"""Jobs (their own outbox) and one usage record per billed job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:55:30.055391
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Microsecond timestamps on MySQL; SQLite's DATETIME already keeps them.
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.Enum('chat', 'image', name='job_kind', create_constraint=True), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'succeeded', 'failed', 'canceled', name='job_status', create_constraint=True), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.String(length=1024), nullable=True),
    sa.Column('upstream_task_id', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('correlation_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('enqueued_at', TIMESTAMP, nullable=True),
    sa.Column('started_at', TIMESTAMP, nullable=True),
    sa.Column('lease_until', TIMESTAMP, nullable=True),
    sa.Column('deadline_at', TIMESTAMP, nullable=False),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_jobs_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('user_id', 'idempotency_key', name=op.f('uq_jobs_user_id_idempotency_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_status_deadline', ['status', 'deadline_at'], unique=False)
        batch_op.create_index('ix_jobs_status_enqueued', ['status', 'enqueued_at'], unique=False)
        batch_op.create_index('ix_jobs_status_lease', ['status', 'lease_until'], unique=False)
        batch_op.create_index('ix_jobs_user_created', ['user_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_user_kind_created', ['user_id', 'kind', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_user_status_created', ['user_id', 'status', 'created_at', 'id'], unique=False)

    op.create_table('usage_records',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.Enum('chat', 'image', name='usage_kind', create_constraint=True), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('input_tokens', sa.Integer(), nullable=False),
    sa.Column('output_tokens', sa.Integer(), nullable=False),
    sa.Column('total_tokens', sa.Integer(), nullable=False),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.Column('cost', sa.Numeric(precision=18, scale=8), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('path', sa.String(length=16), nullable=False),
    sa.Column('upstream_request_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_usage_records_job_id_jobs')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_usage_records_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_records')),
    sa.UniqueConstraint('job_id', name=op.f('uq_usage_records_job_id'))
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.create_index('ix_usage_records_created', ['created_at'], unique=False)
        batch_op.create_index('ix_usage_records_user_created', ['user_id', 'created_at'], unique=False)



def downgrade() -> None:
    # Dropping the tables drops their indexes; MySQL refuses to drop an index a foreign key
    # still needs, so the indexes are not dropped one by one first.
    op.drop_table("usage_records")
    op.drop_table("jobs")
