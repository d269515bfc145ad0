"""Webhooks: each user's signing secret, and every attempt at delivering a job's events."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.infra.orm import Base, BigId, Timestamp, string_enum, utcnow


class WebhookEvent(enum.StrEnum):
    START = "start"  # the job's first attempt began
    COMPLETED = "completed"  # the job reached a terminal state (succeeded, failed, canceled)


DEFAULT_EVENTS = (WebhookEvent.COMPLETED,)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # owed: due at next_attempt_at (or being sent, until then)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # another status, a timeout or a connection error: retried
    GONE = "gone"  # the receiver answered 410: no more retries
    REFUSED = "refused"  # the URL was not safe to call (see addresses.py)
    GAVE_UP = "gave_up"  # failed, and the retry window is over

    @property
    def is_final(self) -> bool:
        return self not in (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


class WebhookSecret(Base):
    """A user's signing secret; after a rotation the previous one signs too, for a while."""

    __tablename__ = "webhook_secrets"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))
    previous_secret: Mapped[str | None] = mapped_column(String(64))
    previous_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class WebhookDelivery(Base):
    """One attempt at delivering one message (a job's event). A message's attempts share its
    `message_id` (the webhook-id header); the attempt owed next is the one row `pending`, and
    the rows are the deliveries' outbox (the sweeper publishes pending rows that are due)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_job", "job_id", "id"),
        # The sweeper's scan: only pending rows have a next attempt.
        Index("ix_webhook_deliveries_next", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    message_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[WebhookEvent] = mapped_column(string_enum(WebhookEvent, "webhook_event"))
    url: Mapped[str] = mapped_column(String(2048))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[DeliveryStatus] = mapped_column(
        string_enum(DeliveryStatus, "webhook_delivery_status"))
    # When the event happened (the transition's time): the delivery-latency metric's start,
    # and the start of the retry window.
    event_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # When the message owed for a pending row was last published and not yet taken (None:
    # nothing in the broker for it, so the sweeper publishes it once it is due).
    published_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    attempted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    response_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
