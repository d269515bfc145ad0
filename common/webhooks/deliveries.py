"""Webhook deliveries: at least once, never lost.

- The delivery a transition owes (a job's `start` or `completed` event, as its filter asks) is
  written as a `pending` row in the transition's own transaction (the lifecycle's
  `in_transaction` hook), and its task is published after the commit (`after_commit`).
- The task (`deliver`) takes the job's due rows for a lease, signs the job as
  `GET /api/jobs/<id>` shows it, and POSTs it (sending.py); the outcome is recorded, and a
  failure owes the next attempt as a new pending row, due after the backoff schedule, sent by
  a countdown message (never a sleep) or, beyond the broker's visibility timeout, by the
  sweeper.
- The sweeper (`resume_due`) publishes again every pending row that is due and has no message
  in the broker: never published, lost with a flushed Redis, or taken by a worker that died.
- A message keeps its `webhook-id` across attempts, so receivers dedupe by it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import time
import uuid

from sqlalchemy import Connection, insert, or_, select, update

from common.accounts.signing_key import jwt_secret
from common.errors import Conflict
from common.infra import metrics
from common.infra.db import Database
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.infra.storage import image_store
from common.jobs import queries
from common.jobs.queue import DELIVER_WEBHOOK, Publisher, Step
from common.jobs.results import ImageResult
from common.jobs.shapes import JobShapes
from common.webhooks import secrets, signing
from common.webhooks.addresses import WebhookPolicy
from common.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from common.webhooks.sending import Sent, WebhookSender

logger = logging.getLogger(__name__)
deliveries = WebhookDelivery.__table__
c = deliveries.c
PENDING = DeliveryStatus.PENDING
# A completed image job is sent once its images were copied (our links, not DashScope's),
# waiting at most this long for the copies.
SETTLE_WAIT_SECONDS = 60.0
SETTLE_POLL_SECONDS = 1.0


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookDeliveries:
    def __init__(self, *, database: Database, publisher: Publisher, policy: WebhookPolicy,
                 settings: Settings, shapes_factory=None) -> None:
        self.database = database
        self.publisher = publisher
        self.policy = policy
        self.timeout = settings.webhook_timeout_seconds
        self.schedule = settings.webhook_retry_schedule
        self.give_up_seconds = settings.webhook_give_up_seconds
        self.overlap_seconds = settings.webhook_secret_overlap_seconds
        # A countdown longer than the broker's visibility timeout would be delivered twice
        # (Redis); longer waits are the sweeper's.
        self.max_countdown = min(300.0, settings.broker_visibility_timeout / 2)
        self.lease_seconds = 2 * self.timeout + 5
        self._shapes_factory = shapes_factory

    @classmethod
    def of(cls, *, settings: Settings, database: Database, publisher: Publisher
           ) -> WebhookDeliveries:
        def shapes():  # only a worker that sends builds it (an S3 client, the signing key)
            return JobShapes(settings=settings, image_store=image_store(settings),
                             signing_key=jwt_secret(settings))

        return cls(database=database, publisher=publisher, settings=settings,
                   policy=WebhookPolicy(settings.webhook_allow_hosts), shapes_factory=shapes)

    @functools.cached_property
    def shapes(self):
        return self._shapes_factory()

    @functools.cached_property
    def sender(self) -> WebhookSender:
        return WebhookSender(self.policy, timeout=self.timeout)

    # --- the lifecycle's hooks ------------------------------------------------------------

    @staticmethod
    def owed_event(change) -> WebhookEvent | None:
        """The event a committed change owes its job's webhook, if any."""
        target = change.webhook
        if target is None:
            return None
        if change.ended is not None and target.wants(WebhookEvent.COMPLETED):
            return WebhookEvent.COMPLETED
        if change.started and target.wants(WebhookEvent.START):
            return WebhookEvent.START
        return None

    def in_transaction(self, conn: Connection, change) -> None:
        """Write the delivery the change owes, in the change's own transaction."""
        event = self.owed_event(change)
        if event is not None:
            at = change.at or utcnow()
            _insert_pending(conn, job_id=change.job_id, event=event, url=change.webhook.url,
                            at=at, published_at=at)

    def after_commit(self, change) -> None:
        if self.owed_event(change) is not None and \
                not self.publisher.publish(Step(DELIVER_WEBHOOK, change.job_id)):
            # The broker is unreachable: the sweeper publishes it as soon as it is due.
            with self.database.transaction() as conn:
                conn.execute(update(deliveries).where(c.job_id == change.job_id,
                                                      c.status == PENDING)
                             .values(published_at=None))

    # --- sending ---------------------------------------------------------------------------

    def deliver(self, job_id: str) -> int:
        """Send the job's due deliveries; returns how many were attempted."""
        now = utcnow()
        with self.database.transaction() as conn:
            due = conn.execute(
                select(c.id, c.job_id, c.message_id, c.event, c.url, c.attempt, c.event_at,
                       c.user_id, c.next_attempt_at)
                .where(c.job_id == job_id, c.status == PENDING,
                       c.next_attempt_at <= now + _seconds(0.5)).order_by(c.id)).all()
            if not due:
                return 0
            view = queries.find(conn, job_id)
            if _unsettled(view) and any(
                    (now - r.event_at).total_seconds() < SETTLE_WAIT_SECONDS for r in due):
                _take(conn, due, next_attempt_at=now + _seconds(SETTLE_POLL_SECONDS),
                      published_at=now)
                rows = []
            else:
                # Taken for a lease: a worker that dies mid-send leaves a row the sweeper
                # publishes again once the lease is over.
                rows = _take(conn, due, next_attempt_at=now + _seconds(self.lease_seconds),
                             published_at=None)
                keys = secrets.current(conn, rows[0].user_id).signing(now) if rows else []
        if not rows:
            if _unsettled(view):
                self.publisher.publish(Step(DELIVER_WEBHOOK, job_id, SETTLE_POLL_SECONDS))
            return 0
        body = self.shapes.payload(view)
        for row in rows:
            headers = signing.headers(keys, row.message_id, int(time.time()), body)
            self._record(row, self.sender.post(row.url, body, headers))
        return len(rows)

    def _record(self, row, sent: Sent) -> None:
        """Record one attempt's outcome, and owe the next attempt if it failed."""
        now = utcnow()
        status, delay = self._outcome(row, sent, now)
        with self.database.transaction() as conn:
            conn.execute(update(deliveries).where(c.id == row.id).values(
                status=status, attempted_at=now, response_code=sent.status,
                latency_ms=sent.latency_ms, error=sent.error and sent.error[:512],
                next_attempt_at=None, published_at=None))
            if delay is not None:
                countdown = delay if delay <= self.max_countdown else None
                _insert_pending(conn, job_id=row.job_id, event=row.event,
                                url=row.url, at=row.event_at, message_id=row.message_id,
                                attempt=row.attempt + 1, due=now + _seconds(delay),
                                published_at=now if countdown is not None else None,
                                user_id=row.user_id)
        metrics.WEBHOOK_DELIVERIES.labels(status.value).inc()
        if status == DeliveryStatus.DELIVERED and row.event == WebhookEvent.COMPLETED:
            metrics.WEBHOOK_DELIVERY_LATENCY.observe(
                max(0.0, (now - row.event_at).total_seconds()))
        logger.info("webhook attempt message_id=%s attempt=%s status=%s code=%s error=%s",
                    row.message_id, row.attempt, status.value, sent.status, sent.error)
        if delay is not None and delay <= self.max_countdown:
            self.publisher.publish(Step(DELIVER_WEBHOOK, row.job_id, delay))

    def _outcome(self, row, sent: Sent, now: dt.datetime
                 ) -> tuple[DeliveryStatus, float | None]:
        if sent.refused:
            return DeliveryStatus.REFUSED, None
        if sent.status is not None and 200 <= sent.status < 300:
            return DeliveryStatus.DELIVERED, None
        if sent.status == 410:
            return DeliveryStatus.GONE, None
        base = self.schedule[min(row.attempt - 1, len(self.schedule) - 1)]
        delay = base * random.uniform(0.8, 1.2)  # jitter: receivers recovering get no herd
        if (now + _seconds(delay) - row.event_at).total_seconds() > self.give_up_seconds:
            return DeliveryStatus.GAVE_UP, None
        return DeliveryStatus.FAILED, delay

    # --- the sweeper -----------------------------------------------------------------------

    def resume_due(self, *, grace_seconds: float, republish_after_seconds: float,
                   limit: int = 500) -> int:
        """Publish again every pending delivery that is due and has no live message: never
        published (broker down), lost (Redis flushed), or taken by a worker that died (its
        lease is over). Returns how many jobs' deliveries were published."""
        now = utcnow()
        with self.database.transaction() as conn:
            rows = conn.execute(
                select(c.id, c.job_id)
                .where(c.next_attempt_at < now - _seconds(grace_seconds), c.status == PENDING,
                       or_(c.published_at.is_(None),
                           c.published_at < now - _seconds(republish_after_seconds)))
                .limit(limit).with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            conn.execute(update(deliveries).where(c.id.in_([r.id for r in rows]))
                         .values(published_at=now))
        job_ids = dict.fromkeys(r.job_id for r in rows)
        return sum(1 for job_id in job_ids if self.publisher.publish(
            Step(DELIVER_WEBHOOK, job_id)))

    # --- the owner's view --------------------------------------------------------------------

    def attempts(self, job_id: str, owner: queries.Owner) -> list:
        """Every delivery attempt of the job (and the one owed next), oldest first."""
        with self.database.connect() as conn:
            queries.get(conn, job_id, owner)
            return conn.execute(
                select(c.message_id, c.event, c.attempt, c.status, c.url, c.response_code,
                       c.latency_ms, c.error, c.created_at, c.attempted_at, c.next_attempt_at)
                .where(c.job_id == job_id).order_by(c.id)).all()

    def redeliver(self, job_id: str, owner: queries.Owner) -> str:
        """Owe a fresh delivery (a new webhook-id) of a finished job's `completed` event."""
        with self.database.transaction() as conn:
            view = queries.get(conn, job_id, owner)
            if not view.webhook:
                raise Conflict("This job has no webhook", code="job_has_no_webhook")
            if not view.status.is_terminal:
                raise Conflict(f"Job is still {view.status.value}; its completion is "
                               "delivered when it ends", code="job_not_finished")
            now = utcnow()
            message_id = _insert_pending(conn, job_id=job_id, event=WebhookEvent.COMPLETED,
                                         url=view.webhook, at=now, published_at=now,
                                         user_id=view.user_id)
        self.publisher.publish(Step(DELIVER_WEBHOOK, job_id))
        return message_id

    def secret(self, user_id: int) -> secrets.SecretState:
        with self.database.transaction() as conn:
            return secrets.current(conn, user_id)

    def rotate_secret(self, user_id: int) -> secrets.SecretState:
        with self.database.transaction() as conn:
            return secrets.rotate(conn, user_id, overlap_seconds=self.overlap_seconds)


def _take(conn: Connection, due, **values) -> list:
    """The due rows this caller took: each by its primary key, only if no other delivery
    took it since it was read (row locks on exactly these rows, so concurrent deliveries of
    other jobs never skip or wait for each other)."""
    return [row for row in due if conn.execute(
        update(deliveries).where(c.id == row.id, c.status == PENDING,
                                 c.next_attempt_at == row.next_attempt_at)
        .values(**values)).rowcount]


def _unsettled(view) -> bool:
    """A finished image job whose images are still being copied."""
    return view is not None and view.status.is_terminal and \
        isinstance(view.result, ImageResult) and not view.settled


def _insert_pending(conn: Connection, *, job_id: str, event: WebhookEvent, url: str,
                    at: dt.datetime, published_at: dt.datetime | None,
                    message_id: str | None = None, attempt: int = 1,
                    due: dt.datetime | None = None, user_id: int | None = None) -> str:
    message_id = message_id or new_message_id()
    if user_id is None:
        user_id = select(queries.jobs.c.user_id).where(queries.jobs.c.id == job_id) \
            .scalar_subquery()
    conn.execute(insert(deliveries).values(
        job_id=job_id, user_id=user_id, message_id=message_id, event=event, url=url,
        attempt=attempt, status=PENDING, event_at=at, next_attempt_at=due or at,
        published_at=published_at, created_at=utcnow()))
    return message_id


def attempts_of(conn: Connection, job_id: str) -> list[WebhookDelivery]:
    """Every delivery attempt of a job's webhook, oldest first (what its owner is shown)."""
    table = WebhookDelivery.__table__
    return list(conn.execute(select(table).where(table.c.job_id == job_id)
                             .order_by(table.c.id)).all())
