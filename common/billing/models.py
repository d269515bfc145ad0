"""Usage records: what each job cost, written in the transaction that ends the job."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from common.infra.orm import Base, BigId, Timestamp, string_enum, utcnow
from common.jobs.models import JobKind


class UsageRecord(Base):
    """What one job cost upstream: at most one row per job, written with its outcome."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_created", "user_id", "created_at"),
        Index("ix_usage_records_created", "created_at"),
        Index("ix_usage_records_key_created", "api_key_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id"), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    kind: Mapped[JobKind] = mapped_column(string_enum(JobKind, "usage_kind"))
    model: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    # Of input_tokens, those of input images (vision chat).
    image_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    video_seconds: Mapped[int] = mapped_column(Integer, default=0)
    video_count: Mapped[int] = mapped_column(Integer, default=0)
    # The tokens are our estimate, not DashScope's report (common.billing.pricing.Usage).
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))  # all included
    compute_cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))  # FC part
    currency: Mapped[str] = mapped_column(String(3))
    path: Mapped[str] = mapped_column(String(16), default="dashscope")
    upstream_request_id: Mapped[str | None] = mapped_column(String(64))
    api_key_id: Mapped[int | None] = mapped_column(BigId)  # the key that paid, if any
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class JobCharge(Base):
    """Who pays for a job and what was reserved for it (common.billing.budgets): one row per
    job, written in the job's submit transaction and closed exactly once by its ending."""

    __tablename__ = "job_charges"
    __table_args__ = (
        Index("ix_job_charges_user_period", "user_id", "user_period"),
        Index("ix_job_charges_key_period", "api_key_id", "key_period"),
        Index("ix_job_charges_open", "closed_at", "created_at"),
    )

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId)
    api_key_id: Mapped[int | None] = mapped_column(BigId)
    user_period: Mapped[str] = mapped_column(String(12))
    key_period: Mapped[str | None] = mapped_column(String(12))
    reserved: Mapped[Decimal] = mapped_column(Numeric(18, 8))
    reserved_tokens: Mapped[int] = mapped_column(Integer)
    # The counter periods `reserved` is held against (None: no budget applied).
    held_user: Mapped[str | None] = mapped_column(String(12))
    held_key: Mapped[str | None] = mapped_column(String(12))
    cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    outcome: Mapped[str | None] = mapped_column(String(16))


class BudgetCounter(Base):
    """Spent and reserved money of one user or key in one budget period: the row whose lock
    makes a reservation exact across every process."""

    __tablename__ = "budget_counters"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(String(12), primary_key=True)
    spent: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))  # None: not seeded yet
    reserved: Mapped[Decimal] = mapped_column(Numeric(18, 8))
