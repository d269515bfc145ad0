"""Image-edit and video jobs: two job kinds, seconds of video on usage rows, uploaded files.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
OLD_KINDS = ('chat', 'image', 'embedding')
NEW_KINDS = ('chat', 'image', 'embedding', 'image_edit', 'video')


def _kinds(table: str, name: str, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    # batch mode: SQLite's CHECK constraint of the enum is rebuilt with the table.
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.Enum(*old, name=name,
                                                            create_constraint=True),
                              type_=sa.Enum(*new, name=name, create_constraint=True),
                              existing_nullable=False)


def upgrade() -> None:
    _kinds('jobs', 'job_kind', OLD_KINDS, NEW_KINDS)
    _kinds('usage_records', 'usage_kind', OLD_KINDS, NEW_KINDS)
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('video_seconds', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('video_count', sa.Integer(), nullable=False,
                                      server_default='0'))
    op.create_table(
        'uploaded_files',
        sa.Column('id', sa.String(36), nullable=False),
        sa.Column('user_id', BIG, nullable=False),
        sa.Column('key', sa.String(255), nullable=False),
        sa.Column('filename', sa.String(255), nullable=True),
        sa.Column('content_type', sa.String(64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(64), nullable=False),
        sa.Column('created_at', TS, nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_uploaded_files_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_uploaded_files')))
    with op.batch_alter_table('uploaded_files', schema=None) as batch_op:
        batch_op.create_index('ix_uploaded_files_user_id', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_table('uploaded_files')  # and its index, which MySQL's foreign key needs
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('video_count')
        batch_op.drop_column('video_seconds')
    # Rows of the new kinds cannot be kept under the old enum.
    op.execute("DELETE FROM usage_records WHERE kind IN ('image_edit', 'video')")
    op.execute("DELETE FROM job_charges WHERE job_id IN "
               "(SELECT id FROM jobs WHERE kind IN ('image_edit', 'video'))")
    op.execute("DELETE FROM webhook_deliveries WHERE job_id IN "
               "(SELECT id FROM jobs WHERE kind IN ('image_edit', 'video'))")
    op.execute("DELETE FROM jobs WHERE kind IN ('image_edit', 'video')")
    _kinds('usage_records', 'usage_kind', NEW_KINDS, OLD_KINDS)
    _kinds('jobs', 'job_kind', NEW_KINDS, OLD_KINDS)
