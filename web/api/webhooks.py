"""Webhooks: the caller's signing secret, and each job's delivery attempts."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask_jwt_extended import current_user

from common.infra.orm import utcnow
from common.jobs import queries
from web.authentication import login_required
from web.context import services
from web.envelope import ok
from web.openapi import ERROR, documented
from web.response_models import (
    WebhookAttempt,
    WebhookAttempts,
    WebhookRedelivery,
    WebhookSecretData,
)

bp = Blueprint("webhooks", __name__, url_prefix="/api")


def _owner() -> queries.Owner:
    return queries.Owner(user_id=current_user.id, is_admin=current_user.is_admin)


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value else None


def _secret_data(state) -> WebhookSecretData:
    overlap = state.previous_until if state.previous_until and \
        state.previous_until > utcnow() else None
    return WebhookSecretData(secret=state.secret, previous_secret_expires_at=_iso(overlap),
                             created_at=_iso(state.created_at), rotated_at=_iso(state.rotated_at))


@bp.get("/webhooks/secret")
@documented(summary="Your webhook signing secret (made on first use)", tag="webhooks",
            responses={200: WebhookSecretData})
@login_required
def webhook_secret():
    return ok(_secret_data(services().lifecycle.webhooks.secret(current_user.id)))


@bp.post("/webhooks/secret/rotate")
@documented(summary="A new signing secret; the previous one signs too for 24 hours",
            tag="webhooks", responses={200: WebhookSecretData})
@login_required
def rotate_webhook_secret():
    state = services().lifecycle.webhooks.rotate_secret(current_user.id)
    return ok(_secret_data(state), "Webhook secret rotated")


@bp.get("/jobs/<job_id>/webhooks")
@documented(summary="A job's webhook delivery attempts, oldest first", tag="webhooks",
            responses={200: WebhookAttempts, 404: ERROR})
@login_required
def job_webhooks(job_id: str):
    rows = services().lifecycle.webhooks.attempts(job_id, _owner())
    return ok(WebhookAttempts(items=[WebhookAttempt(
        webhook_id=r.message_id, event=r.event.value, attempt=r.attempt, status=r.status.value,
        url=r.url, response_code=r.response_code, latency_ms=r.latency_ms, error=r.error,
        created_at=_iso(r.created_at), attempted_at=_iso(r.attempted_at),
        next_attempt_at=_iso(r.next_attempt_at)) for r in rows]))


@bp.post("/jobs/<job_id>/webhooks/redeliver")
@documented(summary="Queue a fresh delivery (a new webhook-id) of a finished job",
            tag="webhooks", responses={202: WebhookRedelivery, 404: ERROR, 409: ERROR})
@login_required
def redeliver(job_id: str):
    message_id = services().lifecycle.webhooks.redeliver(job_id, _owner())
    return ok(WebhookRedelivery(webhook_id=message_id), "Delivery queued", status=202)
