"""Revocations the database remembers: login sessions and each user's token generation.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_generation', sa.Integer(), nullable=False,
                                      server_default='0'))
    op.create_table('login_sessions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', _BIG_ID, nullable=False),
    sa.Column('created_at', _TIMESTAMP, nullable=False),
    sa.Column('expires_at', _TIMESTAMP, nullable=False),
    sa.Column('revoked_at', _TIMESTAMP, nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_sessions_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions'))
    )
    op.create_index(op.f('ix_login_sessions_user_id'), 'login_sessions', ['user_id'])


def downgrade() -> None:
    op.drop_table('login_sessions')  # its index goes with it (MySQL keeps it for the FK)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('token_generation')
