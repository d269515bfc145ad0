"""The jobs API: one job, the caller's jobs, cancel, stored images."""

from __future__ import annotations

from flask import Blueprint, Response, redirect
from flask_jwt_extended import current_user

from common.errors import NotFound
from common.jobs import queries
from common.jobs.models import JobStatus
from common.jobs.results import GeneratedImage, ImageResult
from common.jobs.views import JobView
from web.authentication import authenticate, login_required
from web.context import services
from web.envelope import ok
from web.image_links import signed_request_valid
from web.openapi import ERROR, Raw, documented
from web.request_models import JobListQuery
from web.response_models import JobData, JobPage
from web.serializers import job_data
from web.validation import parse_query

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def _owner() -> queries.Owner:
    return queries.Owner(user_id=current_user.id, is_admin=current_user.is_admin)


@bp.get("/<job_id>")
@documented(summary="One job (its owner or an admin; anyone else gets 404)", tag="jobs",
            responses={200: JobData, 404: ERROR})
@login_required
def get_job(job_id: str):
    with services().database.connect() as conn:
        view = queries.get(conn, job_id, _owner())
    # An unfinished job tells its poller when to ask again, like the 202 that announced it.
    return ok(job_data(view), headers={} if view.status.is_terminal else {"Retry-After": "1"})


@bp.get("")
@documented(summary="Your jobs, newest first, one cursor page at a time", tag="jobs",
            query=JobListQuery, responses={200: JobPage, 400: ERROR})
@login_required
def list_jobs():
    query = parse_query(JobListQuery)
    with services().database.connect() as conn:
        views, next_cursor = queries.page(conn, _owner(), status=query.status, kind=query.kind,
                                          cursor=query.cursor, limit=query.limit)
    return ok(JobPage(items=[job_data(view) for view in views], next_cursor=next_cursor))


@bp.post("/<job_id>/cancel")
@documented(summary="Cancel a queued or running job", tag="jobs",
            responses={200: JobData, 404: ERROR, 409: ERROR})
@login_required
def cancel_job(job_id: str):
    return ok(job_data(services().lifecycle.cancel(job_id, _owner())), "Job canceled")


@bp.get("/<job_id>/images/<int:index>")
@documented(summary="A stored image: by the signed link the API gave, or as its owner",
            tag="jobs", auth=False, responses={
                200: Raw("image/png", description="The image bytes (its own content type)"),
                302: Raw("", description="Where the bucket serves it (S3 storage)"),
                401: ERROR, 404: ERROR, 503: ERROR})
def job_image(job_id: str, index: int):
    """A stored image: by signed link, or for the owner (or an admin) with a token."""
    svc = services()
    signed = signed_request_valid()
    if not signed:
        authenticate()
    with svc.database.connect() as conn:
        view = queries.find(conn, job_id) if signed else queries.get(conn, job_id, _owner())
    image = _stored_image(view, index)
    direct = svc.image_store.presigned_url(image.key, svc.settings.image_url_ttl_seconds)
    if direct:
        return redirect(direct)
    data = svc.image_store.get(image.key)
    if data is None:
        raise NotFound("Image not found", code="image_not_found")
    response = Response(data, mimetype=image.content_type)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _stored_image(view: JobView | None, index: int) -> GeneratedImage:
    results = view.result.output.results if view is not None \
        and view.status == JobStatus.SUCCEEDED and isinstance(view.result, ImageResult) else []
    if not 0 <= index < len(results) or not getattr(results[index], "stored", False):
        raise NotFound("Image not found", code="image_not_found")
    return results[index]
