"""The job service: the one place that moves a job between states.

    queued -> running -> succeeded | failed | canceled      (terminal states never change)

Delivery is at-least-once (late acks, redelivery, the sweeper), so every transition is a
conditional UPDATE that only one caller can win:
- `claim` takes a lease; a second copy of the same message finds the lease held and stops;
- `finish` only moves a *running* job, and writes the usage row in the same transaction,
  guarded by UNIQUE(usage_records.job_id);
- the job row is its own outbox: `enqueued_at` records the last publish, and `due_for_publish`
  finds jobs whose message never left, was lost, or whose worker died.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from decimal import Decimal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from common.billing.models import UsageRecord
from common.billing.pricing import Usage
from common.errors import Conflict, NotFound, ValidationFailed
from common.infra import metrics
from common.infra.orm import utcnow
from common.jobs.models import ACTIVE_STATUSES, Job, JobKind, JobStatus
from common.upstream.failures import UpstreamStatus

# Codes for failures the platform decides itself (upstream failures keep upstream's code).
DEADLINE_EXCEEDED = "deadline_exceeded"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
UPSTREAM_TERMINAL = UpstreamStatus.terminal()


@dataclasses.dataclass(frozen=True)
class Owner:
    """Who asks: only the owner or an admin may see or touch a job."""

    user_id: int
    is_admin: bool = False


def fingerprint(kind: JobKind, model: str, request: dict) -> str:
    canonical = json.dumps({"kind": kind.value, "model": model, "request": request},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit(*, session: Session, user_id: int, kind: JobKind, model: str, request: dict,
           deadline_seconds: int, idempotency_key: str | None = None,
           idempotency_ttl_seconds: int = 86400, correlation_id: str | None = None,
           path: str = "dashscope", job_id: str | None = None) -> tuple[Job, bool]:
    """Commit a queued job, or find the one this idempotency key already made.

    Returns (job, created). The same key with a different request is a Conflict; a key older
    than its TTL is released and starts a new job. `enqueued_at` is set optimistically, since
    the caller publishes right after the commit; it calls `mark_unpublished` if that fails.
    `job_id` lets a caller know the id before the job exists (to listen for its wake-up).
    """
    now = utcnow()
    digest = fingerprint(kind, model, request)
    if idempotency_key:
        existing = _replay(session, user_id, idempotency_key, digest, now,
                           idempotency_ttl_seconds)
        if existing is not None:
            return existing, False
    job = Job(id=job_id or str(uuid.uuid4()), user_id=user_id, kind=kind, model=model,
              status=JobStatus.QUEUED, request=request, attempts=0,
              idempotency_key=idempotency_key, request_fingerprint=digest,
              correlation_id=correlation_id, created_at=now, updated_at=now, enqueued_at=now,
              path=path, compute_cost=Decimal(0),
              deadline_at=now + dt.timedelta(seconds=deadline_seconds))
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer with its job.
        session.rollback()
        existing = _replay(session, user_id, idempotency_key, digest, now,
                           idempotency_ttl_seconds) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return job, True


def _replay(session: Session, user_id: int, key: str, digest: str, now: dt.datetime,
            ttl_seconds: int) -> Job | None:
    job = session.scalar(select(Job).where(Job.user_id == user_id, Job.idempotency_key == key))
    if job is None:
        return None
    if job.created_at < now - dt.timedelta(seconds=ttl_seconds):
        job.idempotency_key = None  # expired: the key may start a new job
        session.commit()
        return None
    if job.request_fingerprint != digest:
        raise Conflict("Idempotency-Key was already used with a different request",
                       code="idempotency_key_reused")
    return job


def get(*, session: Session, job_id: str, owner: Owner) -> Job:
    """The job, if `owner` may see it; anyone else gets the same 404 as for a missing job."""
    job = session.get(Job, job_id, options=[joinedload(Job.usage)]) \
        if _looks_like_uuid(job_id) else None
    if job is None or (job.user_id != owner.user_id and not owner.is_admin):
        raise NotFound("Job not found", code="job_not_found")
    return job


def find(*, session: Session, job_id: str) -> Job | None:
    """A job by id, with no ownership check (for callers that proved access otherwise)."""
    return session.get(Job, job_id) if _looks_like_uuid(job_id) else None


def reload(*, session: Session, job_id: str) -> Job:
    """Re-read a job's row, discarding whatever this session had cached."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound("Job not found", code="job_not_found")
    return job


def list_jobs(*, session: Session, owner: Owner, status: JobStatus | None = None,
              kind: JobKind | None = None, cursor: str | None = None, limit: int = 20
              ) -> tuple[list[Job], str | None]:
    """The owner's jobs, newest first, one page at a time (keyset pagination)."""
    query = select(Job).options(joinedload(Job.usage)).where(Job.user_id == owner.user_id)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created_at,
                                and_(Job.created_at == created_at, Job.id < job_id)))
    rows = list(session.scalars(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    return page, encode_cursor(page[-1]) if more else None


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return dt.datetime.fromisoformat(created_at), str(job_id)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("Invalid cursor", errors=[
            {"field": "cursor", "message": "not a cursor returned by this API"}]) from exc


def cancel(*, session: Session, job_id: str, owner: Owner) -> Job:
    """Cancel a queued or running job; a finished one is a Conflict."""
    job = get(session=session, job_id=job_id, owner=owner)
    now = utcnow()
    moved = session.execute(
        update(Job).where(Job.id == job.id, Job.status.in_(ACTIVE_STATUSES))
        .values(status=JobStatus.CANCELED, finished_at=now, lease_until=None, updated_at=now)
    ).rowcount
    session.commit()
    job = reload(session=session, job_id=job.id)
    if not moved:
        raise Conflict(f"Job is already {job.status.value}", code="job_not_cancelable")
    metrics.record_job_finished(job.kind.value, job.status.value, job.created_at, now)
    return job


# --- worker side -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Claim:
    job: Job
    attempt: int


def claim(*, session: Session, job_id: str, lease_seconds: float, max_attempts: int
          ) -> Claim | None:
    """Take the job for one attempt, or None when another copy holds it or it is finished.

    A job past its deadline or its attempt budget is failed here instead of run, which also
    stops a message that kills its worker every time from looping forever.
    """
    now = utcnow()
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES),
               or_(Job.lease_until.is_(None), Job.lease_until < now))
        .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, updated_at=now,
                lease_until=now + dt.timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Job.started_at, now))
        .execution_options(synchronize_session=False)  # the row is re-read just below
    ).rowcount
    if not taken:
        session.commit()
        return None
    # Read the row in the same transaction (READ COMMITTED sees our own update): one commit.
    job = session.get(Job, job_id, populate_existing=True)
    session.commit()
    if job.deadline_at < now:
        fail(session=session, job_id=job_id, code=DEADLINE_EXCEEDED,
             message="The job did not finish before its deadline")
        return None
    if job.attempts > max_attempts:
        fail(session=session, job_id=job_id, code=ATTEMPTS_EXHAUSTED,
             message=f"Gave up after {max_attempts} attempts")
        return None
    if job.attempts == 1:
        metrics.JOB_QUEUE_WAIT.labels(job.kind.value).observe(
            max(0.0, (now - job.created_at).total_seconds()))
    return Claim(job=job, attempt=job.attempts)


def schedule_retry(*, session: Session, job_id: str, delay_seconds: float,
                   refund_attempt: bool = False, compute_cost: Decimal = Decimal(0)) -> bool:
    """Release the lease until the retry is due; the retry message's claim takes it again.

    `refund_attempt` un-counts this claim: waiting for capacity is not a failed attempt.
    """
    now = utcnow()
    # A second early, so a retry that runs on a host with a slightly slow clock still claims.
    retry_at = now + dt.timedelta(seconds=max(0.0, delay_seconds - 1.0))
    values = {"lease_until": retry_at, "enqueued_at": now, "updated_at": now,
              "compute_cost": Job.compute_cost + compute_cost}
    if refund_attempt:
        values["attempts"] = Job.attempts - 1
    moved = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(**values)
    ).rowcount
    session.commit()
    return bool(moved)


def record_upstream_task(*, session: Session, job_id: str, task_id: str,
                         first_poll_at: dt.datetime, compute_cost: Decimal = Decimal(0)) -> Job:
    """Persist the upstream task id the moment it exists, whatever became of the job meanwhile
    (a canceled job still owns the task, its billing and its cancellation)."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.upstream_task_id.is_(None))
        .values(upstream_task_id=task_id, upstream_status="PENDING", lease_until=None,
                next_action_at=first_poll_at, updated_at=utcnow(),
                compute_cost=Job.compute_cost + compute_cost))
    session.commit()
    return reload(session=session, job_id=job_id)


def begin_poll(*, session: Session, job_id: str, expected_polls: int,
               lease_seconds: float) -> Job | None:
    """Claim one poll of a job's upstream task. Exactly one message per poll number wins, so
    a republished poll never starts a second polling chain."""
    now = utcnow()
    taken = session.execute(
        update(Job).where(Job.id == job_id, Job.polls == expected_polls,
                          Job.upstream_task_id.is_not(None),
                          or_(Job.upstream_status.is_(None),
                              Job.upstream_status.not_in(UPSTREAM_TERMINAL)))
        .values(polls=Job.polls + 1, next_action_at=now + dt.timedelta(seconds=lease_seconds))
    ).rowcount
    session.commit()
    return reload(session=session, job_id=job_id) if taken else None


def schedule_action(*, session: Session, job_id: str, due: dt.datetime | None,
                    compute_cost: Decimal = Decimal(0), **fields) -> None:
    """When the worker next owes this job something (None: nothing more)."""
    if compute_cost:
        fields["compute_cost"] = Job.compute_cost + compute_cost
    session.execute(update(Job).where(Job.id == job_id).values(next_action_at=due, **fields))
    session.commit()


def replace_result(*, session: Session, job_id: str, result: dict,
                   due: dt.datetime | None) -> None:
    """Update a succeeded job's result (e.g. where its images are stored now)."""
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.SUCCEEDED)
                    .values(result=result, next_action_at=due, updated_at=utcnow()))
    session.commit()


def finish(*, session: Session, job_id: str, user_id: int, model: str, kind: JobKind,
           created_at: dt.datetime, result: dict, usage: Usage, cost: Decimal, currency: str,
           path: str, upstream_request_id: str | None = None,
           compute_cost: Decimal = Decimal(0), **upstream_fields) -> JobStatus | None:
    """Record a billed upstream result: the job succeeds and its usage row is written, in one
    transaction. Returns the job's final status, or None if it had already been recorded.

    A job canceled (or expired) while its upstream work was in flight keeps its status and
    hides the result, but the usage row is still written: DashScope bills the work, and our
    records must match its bill. `upstream_fields` (upstream_status, next_action_at) are
    written in the same transaction whatever the job's status. `compute_cost` is the job's
    whole Function Compute bill; the usage record's cost includes it.
    """
    now = utcnow()
    billed = {**upstream_fields, "compute_cost": compute_cost}
    succeeded = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.SUCCEEDED, result=result, finished_at=now, lease_until=None,
                error_code=None, error_message=None, updated_at=now, **billed)
        .execution_options(synchronize_session=False)  # no job object is loaded here
    ).rowcount
    if not succeeded:
        _set_upstream(session, job_id, billed)
    status = JobStatus.SUCCEEDED if succeeded else _status_of(session, job_id)
    session.add(UsageRecord(
        job_id=job_id, user_id=user_id, kind=kind, model=model,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens, image_count=usage.image_count,
        cost=cost + compute_cost, compute_cost=compute_cost, currency=currency, path=path,
        upstream_request_id=upstream_request_id, created_at=now))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another copy of this job already recorded it
        return None
    metrics.USAGE_COST.labels(metrics.model_label(model), currency).inc(float(cost + compute_cost))
    if succeeded:
        metrics.record_job_finished(kind.value, JobStatus.SUCCEEDED.value, created_at, now)
    return status


def _record_finished(session: Session, job_id: str, status: JobStatus) -> None:
    """Count a transition this call just committed (one indexed read)."""
    row = session.execute(select(Job.kind, Job.created_at, Job.finished_at)
                          .where(Job.id == job_id)).one_or_none()
    session.rollback()
    if row is not None:
        metrics.record_job_finished(row.kind.value, status.value, row.created_at,
                                    row.finished_at or utcnow())


def _set_upstream(session: Session, job_id: str, fields: dict) -> None:
    if fields:
        session.execute(update(Job).where(Job.id == job_id).values(**fields))


def _status_of(session: Session, job_id: str) -> JobStatus | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))


def fail(*, session: Session, job_id: str, code: str, message: str,
         compute_cost: Decimal = Decimal(0), **upstream_fields) -> bool:
    """Fail an unfinished job with an error code and message; False if it had finished."""
    now = utcnow()
    moved = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
        .values(status=JobStatus.FAILED, error_code=code[:64], error_message=message[:1024],
                finished_at=now, lease_until=None, updated_at=now)
    ).rowcount
    if compute_cost:
        upstream_fields["compute_cost"] = Job.compute_cost + compute_cost
    _set_upstream(session, job_id, upstream_fields)
    session.commit()
    if moved:
        _record_finished(session, job_id, JobStatus.FAILED)
    return bool(moved)


def end_canceled_upstream(*, session: Session, job_id: str, **upstream_fields) -> bool:
    """The upstream task was canceled (by us or DashScope): the job ends canceled."""
    now = utcnow()
    moved = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
        .values(status=JobStatus.CANCELED, finished_at=now, lease_until=None, updated_at=now)
    ).rowcount
    _set_upstream(session, job_id, upstream_fields)
    session.commit()
    if moved:
        _record_finished(session, job_id, JobStatus.CANCELED)
    return bool(moved)


def mark_unpublished(*, session: Session, job_id: str) -> None:
    """The first publish failed: let the sweeper publish the job as soon as its grace ends."""
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                    .values(enqueued_at=None))
    session.commit()


def mark_enqueued(*, session: Session, job_ids: list[str]) -> None:
    if job_ids:
        now = utcnow()
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(enqueued_at=now))
        session.commit()


# --- sweeper -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Expired:
    id: str
    kind: JobKind
    upstream_running: bool  # an upstream task is still working: try to cancel it


def expire_overdue(*, session: Session, limit: int = 500) -> list[Expired]:
    """Fail every unfinished job past its deadline."""
    now = utcnow()
    rows = session.execute(
        select(Job.id, Job.kind, Job.upstream_task_id, Job.upstream_status, Job.created_at)
        .where(Job.status.in_(ACTIVE_STATUSES), Job.deadline_at < now)
        .limit(limit).with_for_update(skip_locked=True)).all()
    if rows:
        session.execute(
            update(Job).where(Job.id.in_([r.id for r in rows]),
                              Job.status.in_(ACTIVE_STATUSES))
            .values(status=JobStatus.FAILED, error_code=DEADLINE_EXCEEDED,
                    error_message="The job did not finish before its deadline",
                    finished_at=now, lease_until=None, updated_at=now))
    session.commit()
    for r in rows:  # the rows were locked, so every one of them moved
        metrics.record_job_finished(r.kind.value, JobStatus.FAILED.value, r.created_at, now)
    return [Expired(r.id, r.kind, bool(r.upstream_task_id)
                    and r.upstream_status not in UPSTREAM_TERMINAL) for r in rows]


@dataclasses.dataclass(frozen=True)
class OwedAction:
    id: str
    status: JobStatus
    upstream_status: str | None
    polls: int

    @property
    def needs_poll(self) -> bool:
        return self.upstream_status not in UPSTREAM_TERMINAL

    @property
    def needs_store(self) -> bool:
        return self.upstream_status == "SUCCEEDED" and self.status == JobStatus.SUCCEEDED


def overdue_actions(*, session: Session, grace_seconds: float, retry_after_seconds: float,
                    limit: int = 500) -> list[OwedAction]:
    """Jobs whose owed action (a poll, storing images) is overdue: its message was lost or its
    worker died. Their due time moves on, so a message lost again is retried later, not at
    every sweep."""
    now = utcnow()
    rows = session.execute(
        select(Job.id, Job.status, Job.upstream_status, Job.polls)
        .where(Job.next_action_at < now - dt.timedelta(seconds=grace_seconds))
        .limit(limit).with_for_update(skip_locked=True)).all()
    if rows:
        session.execute(update(Job).where(Job.id.in_([r.id for r in rows]))
                        .values(next_action_at=now + dt.timedelta(seconds=retry_after_seconds)))
    session.commit()
    return [OwedAction(r.id, r.status, r.upstream_status, r.polls) for r in rows]


def due_for_publish(*, session: Session, grace_seconds: float, republish_after_seconds: float,
                    limit: int = 500) -> list[tuple[str, JobKind]]:
    """Jobs whose message must be (re)published:

    - queued, never published (the broker was down, or the process died after the commit);
    - queued, published long ago and still unclaimed (the message was lost);
    - running with an expired lease and no publish since (the worker died mid-attempt).
    """
    now = utcnow()
    grace = now - dt.timedelta(seconds=grace_seconds)
    stale = now - dt.timedelta(seconds=republish_after_seconds)
    queued = Job.status == JobStatus.QUEUED
    running = Job.status == JobStatus.RUNNING
    rows = session.execute(
        select(Job.id, Job.kind).where(or_(
            and_(queued, Job.enqueued_at.is_(None), Job.created_at < grace),
            and_(queued, Job.enqueued_at < stale),
            and_(running, Job.lease_until < grace,
                 or_(Job.enqueued_at.is_(None), Job.enqueued_at < Job.lease_until,
                     Job.enqueued_at < stale)),
        )).limit(limit)).all()
    session.rollback()
    return [(row.id, row.kind) for row in rows]


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
