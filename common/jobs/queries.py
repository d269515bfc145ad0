"""Reading jobs as their owners may see them: one job, a page of jobs, keyset cursors."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import uuid

from sqlalchemy import Connection, Row, and_, bindparam, func, or_, select

from common.billing.models import UsageRecord
from common.errors import NotFound, ValidationFailed
from common.jobs.models import Job, JobKind, JobStatus
from common.jobs.results import parse_result
from common.jobs.views import JobUsage, JobView

jobs = Job.__table__
usage = UsageRecord.__table__

_VIEW_COLUMNS = (
    jobs.c.id, jobs.c.user_id, jobs.c.kind, jobs.c.model, jobs.c.status, jobs.c.created_at,
    jobs.c.started_at, jobs.c.finished_at, jobs.c.deadline_at, jobs.c.attempts, jobs.c.result,
    jobs.c.error_code, jobs.c.error_message,
    usage.c.id.label("usage_id"), usage.c.input_tokens, usage.c.output_tokens,
    usage.c.total_tokens, usage.c.image_count, usage.c.image_tokens, usage.c.video_seconds,
    usage.c.video_count, usage.c.estimated, usage.c.cost,
    usage.c.currency, jobs.c.webhook, jobs.c.webhook_events)
# Only a finished job has a usage row; the outer join costs one index lookup per job.
_VIEWS = select(*_VIEW_COLUMNS).select_from(
    jobs.outerjoin(usage, usage.c.job_id == jobs.c.id))
_ONE = _VIEWS.where(jobs.c.id == bindparam("p_id"))


@dataclasses.dataclass(frozen=True)
class Owner:
    """Who asks: only the owner or an admin may see or touch a job."""

    user_id: int
    is_admin: bool = False

    def may_see(self, user_id: int) -> bool:
        return self.is_admin or user_id == self.user_id


def view_of(row: Row) -> JobView:
    shown = row.status == JobStatus.SUCCEEDED
    return JobView(
        id=row.id, user_id=row.user_id, kind=row.kind, model=row.model, status=row.status,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        deadline_at=row.deadline_at, attempts=row.attempts,
        result=parse_result(row.kind, row.result) if shown else None,
        error_code=row.error_code if row.status == JobStatus.FAILED else None,
        error_message=row.error_message if row.status == JobStatus.FAILED else None,
        usage=None if row.usage_id is None else JobUsage(
            input_tokens=row.input_tokens, output_tokens=row.output_tokens,
            total_tokens=row.total_tokens, image_count=row.image_count,
            image_tokens=row.image_tokens,
            video_seconds=row.video_seconds, video_count=row.video_count,
            estimated=row.estimated, cost=row.cost,
            currency=row.currency),
        webhook=row.webhook,
        webhook_events=tuple(row.webhook_events.split(",")) if row.webhook_events else ())


def find(conn: Connection, job_id: str) -> JobView | None:
    """A job by id, with no ownership check (for callers that proved access otherwise)."""
    if not looks_like_uuid(job_id):
        return None
    row = conn.execute(_ONE, {"p_id": job_id}).one_or_none()
    return None if row is None else view_of(row)


def request_of(conn: Connection, job_id: str) -> dict | None:
    """What the job was asked to do (the worker's input)."""
    return conn.execute(select(jobs.c.request).where(jobs.c.id == job_id)).scalar_one_or_none()


def get(conn: Connection, job_id: str, owner: Owner) -> JobView:
    """The job, if `owner` may see it; anyone else gets the same 404 as for a missing job."""
    view = find(conn, job_id)
    if view is None or not owner.may_see(view.user_id):
        raise NotFound("Job not found", code="job_not_found")
    return view


def page(conn: Connection, owner: Owner, *, status: JobStatus | None = None,
         kind: JobKind | None = None, cursor: str | None = None, limit: int = 20,
         created_from: dt.datetime | None = None, created_before: dt.datetime | None = None
         ) -> tuple[list[JobView], str | None]:
    """The owner's jobs, newest first, one page at a time (keyset pagination); optionally
    only those created in [created_from, created_before) (naive UTC)."""
    query = _VIEWS.where(jobs.c.user_id == owner.user_id)
    if status is not None:
        query = query.where(jobs.c.status == status)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    if created_from is not None:
        query = query.where(jobs.c.created_at >= created_from)
    if created_before is not None:
        query = query.where(jobs.c.created_at < created_before)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(or_(jobs.c.created_at < created_at,
                                and_(jobs.c.created_at == created_at, jobs.c.id < job_id)))
    rows = conn.execute(query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
                        .limit(limit + 1)).all()
    views = [view_of(row) for row in rows[:limit]]
    more = len(rows) > limit
    return views, encode_cursor(views[-1]) if more else None


def status_counts(conn: Connection) -> dict[JobStatus, int]:
    """How many jobs are in each state now, every user's (the operator's view)."""
    rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
    counts = {status: 0 for status in JobStatus}
    counts.update({JobStatus(status): int(count) for status, count in rows})
    return counts


def encode_cursor(view: JobView) -> str:
    raw = json.dumps([view.created_at.isoformat(), view.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return dt.datetime.fromisoformat(created_at), str(job_id)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("Invalid cursor", errors=[
            {"field": "cursor", "message": "not a cursor returned by this API"}]) from exc


def looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


# --- what the worker reads of a job it does not claim ------------------------------------

def working_row(conn: Connection, job_id: str, *columns) -> Row | None:
    """Some columns of a job (the worker's steps that take no claim: copies, upstream
    cancels, waiting for capacity)."""
    return conn.execute(select(*(jobs.c[name] for name in columns))
                        .where(jobs.c.id == job_id)).one_or_none()
