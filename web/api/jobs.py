"""The jobs API: one job, the caller's jobs, cancel."""

from __future__ import annotations

from flask import Blueprint, Response, redirect
from flask_jwt_extended import current_user

from common.errors import NotFound
from common.jobs import lifecycle as jobs
from common.jobs.events import announce_job_finished
from common.jobs.models import JobStatus
from common.jobs.queue import publish_cancel
from web.authentication import authenticate, login_required
from web.context import db_session, services
from web.envelope import ok
from web.image_links import signed_request_valid
from web.openapi import ERROR, Raw, documented
from web.request_models import JobListQuery
from web.response_models import JobData, JobPage
from web.serializers import serialize_job
from web.validation import parse_query

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def _owner() -> jobs.Owner:
    return jobs.Owner(user_id=current_user.id, is_admin=current_user.is_admin)


@bp.get("/<job_id>")
@documented(summary="One job (its owner or an admin; anyone else gets 404)", tag="jobs",
            responses={200: JobData, 404: ERROR})
@login_required
def get_job(job_id: str):
    job = jobs.get(session=db_session(), job_id=job_id, owner=_owner())
    # An unfinished job tells its poller when to ask again, like the 202 that announced it.
    return ok(serialize_job(job), headers={} if job.status.is_terminal else {"Retry-After": "1"})


@bp.get("")
@documented(summary="Your jobs, newest first, one cursor page at a time", tag="jobs",
            query=JobListQuery, responses={200: JobPage, 400: ERROR})
@login_required
def list_jobs():
    query = parse_query(JobListQuery)
    page, next_cursor = jobs.list_jobs(session=db_session(), owner=_owner(), status=query.status,
                                       kind=query.kind, cursor=query.cursor, limit=query.limit)
    return ok({"items": [serialize_job(job) for job in page], "next_cursor": next_cursor})


@bp.post("/<job_id>/cancel")
@documented(summary="Cancel a queued or running job", tag="jobs",
            responses={200: JobData, 404: ERROR, 409: ERROR})
@login_required
def cancel_job(job_id: str):
    job = jobs.cancel(session=db_session(), job_id=job_id, owner=_owner())
    announce_job_finished(services().redis, job.id)
    if job.upstream_task_id:
        publish_cancel(services().celery, job.id)  # a worker asks DashScope to stop the task
    return ok(serialize_job(job), "Job canceled")


@bp.get("/<job_id>/images/<int:index>")
@documented(summary="A stored image: by the signed link the API gave, or as its owner",
            tag="jobs", auth=False, responses={
                200: Raw("image/png", description="The image bytes (its own content type)"),
                302: Raw("", description="Where the bucket serves it (S3 storage)"),
                401: ERROR, 404: ERROR, 503: ERROR})
def job_image(job_id: str, index: int):
    """A stored image: by signed link, or for the owner (or an admin) with a token."""
    if signed_request_valid():
        job = jobs.find(session=db_session(), job_id=job_id)
    else:
        authenticate()
        job = jobs.get(session=db_session(), job_id=job_id, owner=_owner())
    entry = _stored_image(job, index)
    svc = services()
    direct = svc.image_store.presigned_url(entry["key"], svc.settings.image_url_ttl_seconds)
    if direct:
        return redirect(direct)
    data = svc.image_store.get(entry["key"])
    if data is None:
        raise NotFound("Image not found", code="image_not_found")
    response = Response(data, mimetype=entry["content_type"])
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _stored_image(job, index: int) -> dict:
    results = ((job.result or {}).get("output") or {}).get("results") or [] \
        if job and job.status == JobStatus.SUCCEEDED else []
    if not 0 <= index < len(results) or not results[index].get("stored"):
        raise NotFound("Image not found", code="image_not_found")
    return results[index]
