"""Jobs: one unit of AI work each, and the states it moves through."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.infra.orm import Base, BigId, Timestamp, string_enum, utcnow


def streamed(request: dict | None) -> bool:
    """Whether a job's client asked for its deltas as they come (the request's `stream`)."""
    return bool((request or {}).get("stream"))


class JobKind(enum.StrEnum):
    CHAT = "chat"
    IMAGE = "image"
    # Run in the request that asks (common/jobs/embedding.py), recorded like any job.
    EMBEDDING = "embedding"
    IMAGE_EDIT = "image_edit"
    VIDEO = "video"


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
    """One unit of AI work and its whole history; its own outbox (see transitions.py)."""

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
    kind: Mapped[JobKind] = mapped_column(string_enum(JobKind, "job_kind"))
    model: Mapped[str] = mapped_column(String(64))
    status: Mapped[JobStatus] = mapped_column(string_enum(JobStatus, "job_status"))
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
    # Where the job's events are POSTed (common/webhooks/), and which: "start,completed" or
    # "completed"; both None for a job without a webhook.
    webhook: Mapped[str | None] = mapped_column(String(2048))
    webhook_events: Mapped[str | None] = mapped_column(String(32))
