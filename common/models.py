"""The relational schema: the database row is the truth about users, jobs and usage."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names keep Alembic migrations identical on MySQL and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; MySQL gets a BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Microseconds on MySQL: leases, sweeps and cursors compare instants closer than a second.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> dt.datetime:
    """Naive UTC, the form every DateTime column stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _enum(enum_cls, name):
    """A string enum stored by value, checked by the database."""
    return Enum(enum_cls, name=name, values_callable=lambda e: [m.value for m in e],
                validate_strings=True, create_constraint=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


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
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), default=Role.DEFAULT)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class JobKind(enum.StrEnum):
    CHAT = "chat"
    IMAGE = "image"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(Base):
    """One unit of AI work and its whole history; its own outbox (see common/jobs.py)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        # The owner's listing, newest first, optionally filtered by status or kind.
        Index("ix_jobs_user_created", "user_id", "created_at", "id"),
        Index("ix_jobs_user_status_created", "user_id", "status", "created_at", "id"),
        Index("ix_jobs_user_kind_created", "user_id", "kind", "created_at", "id"),
        # The sweeper's scans.
        Index("ix_jobs_status_enqueued", "status", "enqueued_at"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
        Index("ix_jobs_status_deadline", "status", "deadline_at"),
        # Only jobs that owe the worker an action (a poll, storing images) have a value here.
        Index("ix_jobs_next_action_at", "next_action_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    model: Mapped[str] = mapped_column(String(64))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"))
    request: Mapped[dict] = mapped_column(JSON)
    result: Mapped[dict | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1024))
    upstream_task_id: Mapped[str | None] = mapped_column(String(64))
    # Where the job's upstream work runs ("dashscope" or "fc"), fixed at submission so that a
    # retry never moves a job to the other path.
    path: Mapped[str] = mapped_column(String(16), default="dashscope")
    # Function Compute invocations so far (the usage record takes the total).
    compute_cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))
    # The upstream task's last known status (Wanx: PENDING, RUNNING, SUCCEEDED, ...); it can
    # lag behind a job that was canceled or expired, which keeps being polled for billing.
    upstream_status: Mapped[str | None] = mapped_column(String(16))
    polls: Mapped[int] = mapped_column(Integer, default=0)
    next_action_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    lease_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    deadline_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow,
                                                    onupdate=utcnow)

    # Loaded on demand: the worker never needs it; the jobs API joins it in (common/jobs.py).
    usage: Mapped[UsageRecord | None] = relationship(viewonly=True)


class UsageRecord(Base):
    """What one job cost upstream: at most one row per job, written with its outcome."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_created", "user_id", "created_at"),
        Index("ix_usage_records_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id"), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "usage_kind"))
    model: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))  # all included
    compute_cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))  # FC part
    currency: Mapped[str] = mapped_column(String(3))
    path: Mapped[str] = mapped_column(String(16), default="dashscope")
    upstream_request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
