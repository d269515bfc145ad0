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
    # The tokens are our estimate, not DashScope's report (common.billing.pricing.Usage).
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))  # all included
    compute_cost: Mapped[Decimal] = mapped_column(Numeric(18, 8), default=Decimal(0))  # FC part
    currency: Mapped[str] = mapped_column(String(3))
    path: Mapped[str] = mapped_column(String(16), default="dashscope")
    upstream_request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
