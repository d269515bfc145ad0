"""Submitting work: commit the job, then publish it (the order that loses nothing).

A broker outage does not fail a submission: the committed job waits for the sweeper. The same
Idempotency-Key with the same request answers with the job it made; with another request it
is a Conflict; a key older than its TTL is released and makes a new job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from common.errors import Conflict, ValidationFailed
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.jobs import queries, transitions
from common.jobs.effects import Change
from common.jobs.lifecycle import JobLifecycle
from common.jobs.models import JobKind, JobStatus, streamed
from common.jobs.queue import Step, first_step
from common.jobs.task_specs import SPECS
from common.jobs.views import JobView
from common.webhooks.addresses import UnsafeWebhook, WebhookPolicy
from common.webhooks.targets import WebhookTarget

jobs = transitions.jobs
# An in-request job's deadline past the upstream timeout: the call and its two transactions.
IN_REQUEST_MARGIN_SECONDS = 30


def fingerprint(kind: JobKind, model: str, request: dict,
                webhook: WebhookTarget | None = None) -> str:
    body = {"kind": kind.value, "model": model, "request": request}
    if webhook is not None:  # absent otherwise, so jobs without one keep their fingerprints
        body["webhook"] = [webhook.url, webhook.column]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit(*, lifecycle: JobLifecycle, settings: Settings, user_id: int, kind: JobKind,
           model: str, request: dict, idempotency_key: str | None = None,
           correlation_id: str | None = None, job_id: str | None = None,
           webhook: WebhookTarget | None = None,
           charge: Callable[[Connection, str, dt.datetime], None] | None = None,
           in_request: bool = False) -> tuple[JobView, bool]:
    """Commit a queued job (or find the one this idempotency key made) and publish it.
    Returns (job, created). `job_id` lets a caller know the id before the job exists, to
    listen for its wake-up. A `webhook` that is unsafe to call, as far as can be told
    without DNS, is refused here (400 naming it); the rest is checked at each send.
    `charge` writes the job's budget reservation in its transaction
    (common.billing.budgets; raising refuses the job).

    `in_request`: the caller does the work itself, now (embeddings, common/jobs/embedding.py):
    the job starts running, on its first attempt, and nothing is published. It has no lease,
    so the outbox never hands it to a worker; if the caller dies, the sweeper ends it at its
    deadline (the upstream timeout and a margin), which releases its reservation."""
    if webhook is not None:
        check_webhook(settings, webhook.url)
    digest = fingerprint(kind, model, request, webhook)
    spec = SPECS.get(kind)  # async-task kinds have their own (longer) deadline
    deadline = (spec.deadline_of(settings) if spec
                else settings.upstream_timeout_seconds + IN_REQUEST_MARGIN_SECONDS if in_request
                else settings.job_deadline_seconds)
    job_id = job_id or str(uuid.uuid4())

    def work(conn: Connection):
        now = utcnow()
        if idempotency_key:
            existing = _replay(conn, user_id, idempotency_key, digest, now,
                               settings.idempotency_ttl_seconds)
            if existing is not None:
                return existing, []
        status = JobStatus.RUNNING if in_request else JobStatus.QUEUED
        view = JobView(id=job_id, user_id=user_id, kind=kind, model=model,
                       status=status, created_at=now, attempts=1 if in_request else 0,
                       started_at=now if in_request else None,
                       deadline_at=now + dt.timedelta(seconds=deadline),
                       webhook=webhook and webhook.url,
                       webhook_events=tuple(webhook.column.split(",")) if webhook else ())
        # enqueued_at is set optimistically: the publish follows the commit, and a failed one
        # clears it again (mark_unpublished).
        transitions.insert_job(conn, {
            "id": job_id, "user_id": user_id, "kind": kind, "model": model,
            "status": status, "request": request, "attempts": int(in_request), "polls": 0,
            "started_at": now if in_request else None,
            "idempotency_key": idempotency_key, "request_fingerprint": digest,
            "correlation_id": correlation_id, "created_at": now, "updated_at": now,
            "enqueued_at": None if in_request else now, "path": settings.path_for(kind.value),
            "compute_cost": Decimal(0), "deadline_at": view.deadline_at,
            "webhook": webhook and webhook.url, "webhook_events": webhook and webhook.column})
        if charge is not None:
            charge(conn, job_id, now)
        steps = () if in_request else (
            first_step(kind, job_id, correlation_id, streamed=streamed(request)),)
        return view, [Change(job_id, kind, submitted=True, follow_ups=steps,
                             streamed=streamed(request))]

    unsent: list[Step] = []
    try:
        view = lifecycle.commit(work, unsent=unsent)
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key won the insert: answer with its job.
        view = lifecycle.commit(work, unsent=unsent)
    if unsent:  # the broker is unreachable: the sweeper publishes the job once it is back
        with lifecycle.database.transaction() as conn:
            transitions.mark_unpublished(conn, job_id)
    return view, view.id == job_id


def check_webhook(settings: Settings, url: str) -> None:
    try:
        WebhookPolicy(settings.webhook_allow_hosts).check_url(url)
    except UnsafeWebhook as exc:
        raise ValidationFailed("Invalid webhook", errors=[
            {"field": "webhook", "message": f"webhook {exc}"}]) from exc


def _replay(conn: Connection, user_id: int, key: str, digest: str, now: dt.datetime,
            ttl_seconds: int) -> JobView | None:
    row = conn.execute(select(jobs.c.id, jobs.c.created_at, jobs.c.request_fingerprint)
                       .where(jobs.c.user_id == user_id, jobs.c.idempotency_key == key)
                       ).one_or_none()
    if row is None:
        return None
    if row.created_at < now - dt.timedelta(seconds=ttl_seconds):
        # Expired: the key may start a new job.
        conn.execute(update(jobs).where(jobs.c.id == row.id).values(idempotency_key=None))
        return None
    if row.request_fingerprint != digest:
        raise Conflict("Idempotency-Key was already used with a different request",
                       code="idempotency_key_reused")
    return queries.find(conn, row.id)
