"""The jobs API: one job, the caller's jobs, cancel."""

from __future__ import annotations

from flask import Blueprint
from flask_jwt_extended import current_user

from common import jobs
from common.events import announce_job_finished
from web.auth import login_required
from web.context import db_session, services
from web.envelope import ok
from web.schemas import JobListQuery
from web.serializers import serialize_job
from web.validation import parse_query

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def _owner() -> jobs.Owner:
    return jobs.Owner(user_id=current_user.id, is_admin=current_user.is_admin)


@bp.get("/<job_id>")
@login_required
def get_job(job_id: str):
    return ok(serialize_job(jobs.get(session=db_session(), job_id=job_id, owner=_owner())))


@bp.get("")
@login_required
def list_jobs():
    query = parse_query(JobListQuery)
    page, next_cursor = jobs.list_jobs(session=db_session(), owner=_owner(), status=query.status,
                                       kind=query.kind, cursor=query.cursor, limit=query.limit)
    return ok({"items": [serialize_job(job) for job in page], "next_cursor": next_cursor})


@bp.post("/<job_id>/cancel")
@login_required
def cancel_job(job_id: str):
    job = jobs.cancel(session=db_session(), job_id=job_id, owner=_owner())
    announce_job_finished(services().redis, job.id)
    return ok(serialize_job(job), "Job canceled")
