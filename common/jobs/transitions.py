"""The job state machine as conditional statements on the job row.

    queued -> running -> succeeded | failed | canceled      (terminal states never change)

Delivery is at-least-once, so every transition is a conditional UPDATE only one caller wins:
- a claim takes the lease; a second copy of the message finds it held and stops;
- only a *running* job succeeds, and its usage row goes in the same transaction, guarded by
  UNIQUE(usage_records.job_id);
- a poll claims its poll number, so a duplicate poll message starts no second polling chain;
- the row is its own outbox: `enqueued_at` is the last publish, `lease_until` the current
  attempt, `next_action_at` a poll or image copy the job is owed (see outbox.py).

Core statements, not ORM units of work: the hot path reads and writes only the columns it
needs (PyMySQL parses every column of a full-row read in Python), and the statements every job
runs are `FastStatement`s (common/infra/statements.py). They run inside the caller's
transaction and never commit; the lifecycle's use cases do.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Connection, Row, bindparam, func, insert, or_, select, update

from common.billing.models import UsageRecord
from common.infra.statements import FastStatement
from common.jobs.models import ACTIVE_STATUSES, Job, JobStatus
from common.upstream.failures import UpstreamStatus

jobs = Job.__table__
usage_records = UsageRecord.__table__
c = jobs.c
# Not `status IN (...)`: an IN list is rendered again at every execution (SQLAlchemy's
# "expanding" parameters), two comparisons are compiled once.
IS_ACTIVE = or_(*(c.status == status for status in ACTIVE_STATUSES))

# What a worker needs of a job it took: who, what, where it runs, and how far it got.
CLAIM_COLUMNS = (c.id, c.user_id, c.kind, c.model, c.request, c.path, c.correlation_id,
                 c.attempts, c.deadline_at, c.created_at, c.started_at, c.upstream_task_id,
                 c.upstream_status, c.polls, c.compute_cost, c.webhook, c.webhook_events)

# Bound parameter names may not repeat column names in an UPDATE's SET clause: hence `p_`.
_TAKE_LEASE = FastStatement(
    update(jobs)
    .where(c.id == bindparam("p_id"), IS_ACTIVE,
           or_(c.lease_until.is_(None), c.lease_until < bindparam("p_now")))
    .values(status=JobStatus.RUNNING, attempts=c.attempts + 1, updated_at=bindparam("p_now"),
            lease_until=bindparam("p_lease"),
            started_at=func.coalesce(c.started_at, bindparam("p_now"))))
_CLAIMED = FastStatement(select(*CLAIM_COLUMNS).where(c.id == bindparam("p_id")))
_SUCCEED = FastStatement(
    update(jobs)
    .where(c.id == bindparam("p_id"), c.status == JobStatus.RUNNING)
    .values(status=JobStatus.SUCCEEDED, result=bindparam("p_result", type_=jobs.c.result.type),
            finished_at=bindparam("p_now"), updated_at=bindparam("p_now"), lease_until=None,
            error_code=None, error_message=None,
            compute_cost=c.compute_cost + bindparam("p_cost", type_=c.compute_cost.type),
            upstream_status=bindparam("p_upstream_status", type_=c.upstream_status.type),
            next_action_at=bindparam("p_next", type_=c.next_action_at.type)))
# A result whose job ended meanwhile (canceled, expired): its bill and upstream state only.
_BILL_ONLY = (
    update(jobs)
    .where(c.id == bindparam("p_id"))
    .values(compute_cost=c.compute_cost + bindparam("p_cost", type_=c.compute_cost.type),
            upstream_status=func.coalesce(
                bindparam("p_upstream_status", type_=c.upstream_status.type), c.upstream_status),
            next_action_at=None))
_STATUS = select(c.status).where(c.id == bindparam("p_id"))
_INSERT_USAGE = FastStatement(insert(usage_records))
_INSERT_JOB = FastStatement(insert(jobs))


def take_lease(conn: Connection, job_id: str, *, now: dt.datetime,
               lease_until: dt.datetime) -> bool:
    """Start an attempt: only a queued job, or a running one whose lease has expired."""
    return bool(_TAKE_LEASE.execute(conn, {"p_id": job_id, "p_now": now,
                                           "p_lease": lease_until}).rowcount)


def claimed(conn: Connection, job_id: str) -> Row:
    """The claimed job's working columns (READ COMMITTED sees this transaction's own claim)."""
    return _CLAIMED.execute(conn, {"p_id": job_id}).one()


def stop(conn: Connection, job_ids: list[str], *, now: dt.datetime, status: JobStatus,
         code: str | None = None, message: str | None = None) -> int:
    """End unfinished jobs (canceled, or failed by the platform); returns how many moved.
    Upstream state is left alone: a task still running is still polled, for its bill."""
    return conn.execute(
        update(jobs).where(c.id.in_(job_ids), IS_ACTIVE)
        .values(status=status, error_code=code and code[:64],
                error_message=message and message[:1024], finished_at=now, lease_until=None,
                updated_at=now)).rowcount


def succeed(conn: Connection, job_id: str, *, now: dt.datetime, result: dict,
            add_compute_cost: Decimal, upstream_status: str | None = None,
            next_action_at: dt.datetime | None = None) -> bool:
    """A running job succeeds with its result; False when it had ended meanwhile, in which case
    only its bill and upstream state are kept (the result stays unseen)."""
    values = {"p_id": job_id, "p_cost": add_compute_cost, "p_upstream_status": upstream_status}
    if _SUCCEED.execute(conn, {**values, "p_now": now, "p_result": result,
                               "p_next": next_action_at}).rowcount:
        return True
    conn.execute(_BILL_ONLY, values)
    return False


def status_of(conn: Connection, job_id: str) -> JobStatus | None:
    return conn.execute(_STATUS, {"p_id": job_id}).scalar()


def insert_usage(conn: Connection, values: dict) -> None:
    """The job's one usage row; a second one for the same job raises IntegrityError."""
    _INSERT_USAGE.execute(conn, values)


def insert_job(conn: Connection, values: dict) -> None:
    _INSERT_JOB.execute(conn, values)


def fail(conn: Connection, job_id: str, *, now: dt.datetime, code: str, message: str,
         add_compute_cost: Decimal = Decimal(0), upstream_status: str | None = None) -> bool:
    """An unfinished job fails with the upstream's (or our) code; it is owed nothing more."""
    values: dict = {"compute_cost": c.compute_cost + add_compute_cost, "next_action_at": None}
    if upstream_status:
        values["upstream_status"] = upstream_status
    moved = conn.execute(
        update(jobs).where(c.id == job_id, IS_ACTIVE)
        .values(status=JobStatus.FAILED, error_code=code[:64], error_message=message[:1024],
                finished_at=now, lease_until=None, updated_at=now, **values)).rowcount
    if not moved:
        conn.execute(update(jobs).where(c.id == job_id).values(**values))
    return bool(moved)


def end_canceled_upstream(conn: Connection, job_id: str, *, now: dt.datetime,
                          add_compute_cost: Decimal) -> bool:
    """The upstream task was canceled (by us or DashScope): the job ends canceled."""
    values = {"compute_cost": c.compute_cost + add_compute_cost, "next_action_at": None,
              "upstream_status": UpstreamStatus.CANCELED.value}
    moved = conn.execute(
        update(jobs).where(c.id == job_id, IS_ACTIVE)
        .values(status=JobStatus.CANCELED, finished_at=now, lease_until=None, updated_at=now,
                **values)).rowcount
    if not moved:
        conn.execute(update(jobs).where(c.id == job_id).values(**values))
    return bool(moved)


def release_lease(conn: Connection, job_id: str, *, now: dt.datetime, until: dt.datetime,
                  add_compute_cost: Decimal) -> bool:
    """Hold a running job until its retry is due; the retry message's claim takes it then."""
    return bool(conn.execute(
        update(jobs).where(c.id == job_id, c.status == JobStatus.RUNNING)
        .values(lease_until=until, enqueued_at=now, updated_at=now,
                compute_cost=c.compute_cost + add_compute_cost)).rowcount)


def attach_upstream_task(conn: Connection, job_id: str, *, now: dt.datetime, task_id: str,
                         first_poll_at: dt.datetime, add_compute_cost: Decimal) -> Row:
    """Record the upstream task the moment it exists, whatever became of the job meanwhile (a
    canceled job still owns the task, its bill and its cancellation). Returns the job's
    status and poll count."""
    conn.execute(
        update(jobs).where(c.id == job_id, c.upstream_task_id.is_(None))
        .values(upstream_task_id=task_id, upstream_status=UpstreamStatus.PENDING.value,
                lease_until=None, next_action_at=first_poll_at, updated_at=now,
                compute_cost=c.compute_cost + add_compute_cost))
    return conn.execute(select(c.status, c.polls).where(c.id == job_id)).one()


def take_poll(conn: Connection, job_id: str, *, expected_polls: int,
              lease_until: dt.datetime) -> bool:
    """Claim poll number `expected_polls` of a job's upstream task: exactly one message wins."""
    return bool(conn.execute(
        update(jobs).where(c.id == job_id, c.polls == expected_polls,
                           c.upstream_task_id.is_not(None),
                           or_(c.upstream_status.is_(None),
                               c.upstream_status.not_in(UpstreamStatus.terminal())))
        .values(polls=c.polls + 1, next_action_at=lease_until)).rowcount)


def owe_action(conn: Connection, job_id: str, *, due: dt.datetime | None,
               add_compute_cost: Decimal = Decimal(0),
               upstream_status: str | None = None) -> None:
    """When the worker next owes this job something (a poll, a copy); None: nothing more."""
    values: dict = {"next_action_at": due}
    if add_compute_cost:
        values["compute_cost"] = c.compute_cost + add_compute_cost
    if upstream_status:
        values["upstream_status"] = upstream_status
    conn.execute(update(jobs).where(c.id == job_id).values(**values))


def replace_result(conn: Connection, job_id: str, *, now: dt.datetime, result: dict,
                   due: dt.datetime | None) -> bool:
    """Update a succeeded job's result (where its images are stored now)."""
    return bool(conn.execute(
        update(jobs).where(c.id == job_id, c.status == JobStatus.SUCCEEDED)
        .values(result=result, next_action_at=due, updated_at=now)).rowcount)


def mark_unpublished(conn: Connection, job_id: str) -> None:
    """The first publish failed: the sweeper publishes the job as soon as its grace ends."""
    conn.execute(update(jobs).where(c.id == job_id, c.status == JobStatus.QUEUED)
                 .values(enqueued_at=None))


def mark_published(conn: Connection, job_ids: list[str], *, now: dt.datetime) -> None:
    conn.execute(update(jobs).where(c.id.in_(job_ids)).values(enqueued_at=now))
