"""Users and their roles (the tiers rate limits and permissions follow), and their login
sessions (what a logout ends, remembered by the database, not by Redis)."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from common.infra.orm import Base, BigId, Timestamp, string_enum, utcnow


class Role(enum.StrEnum):
    DEFAULT = "default"
    PREMIUM = "premium"
    ADMIN = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(string_enum(Role, "user_role"), default=Role.DEFAULT)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Every token carries the generation it was issued in; bumping it (password change,
    # deactivation, an admin's revoke) ends all of the user's sessions at once. A counter, not
    # an "issued before" instant: a token's iat has whole seconds and hosts' clocks differ, so a
    # login in the same second as a revoke would be judged wrongly either way.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # An admin-set spend budget (common.billing.budgets); None: the tier's default.
    budget_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    budget_period: Mapped[str | None] = mapped_column(String(8))


class LoginSession(Base):
    """One login: its access and refresh tokens carry its id; a logout ends it."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class ApiKey(Base):
    """A program's credential: acts as its user, narrowed by its own limits. Only an HMAC of
    the secret is stored (common.accounts.api_keys)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    last_four: Mapped[str] = mapped_column(String(4))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    models: Mapped[list | None] = mapped_column(JSON)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    budget_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    budget_period: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
