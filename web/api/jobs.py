"""The jobs API: one job, the caller's jobs, cancel, stored images and videos."""

from __future__ import annotations

import re

from flask import Blueprint, Response, redirect, request, send_file
from flask_jwt_extended import current_user

from common.errors import Conflict, NotFound, ValidationFailed
from common.jobs import queries
from common.jobs.models import JobKind, JobStatus
from common.jobs.results import CopiedResult, GeneratedImage
from common.jobs.views import JobView
from web.authentication import authenticate, login_required
from web.context import services
from web.envelope import ok
from web.image_links import signed_request_valid
from web.openapi import ERROR, Raw, documented
from web.request_models import JobListQuery
from web.response_models import JobData, JobPage
from web.serializers import job_data
from web.streaming import sse_response
from web.validation import parse_query

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def _owner() -> queries.Owner:
    return queries.Owner(user_id=current_user.id, is_admin=current_user.is_admin)


@bp.get("/<job_id>")
@documented(summary="One job (its owner or an admin; anyone else gets 404)", tag="jobs",
            responses={200: JobData, 404: ERROR})
@login_required(api_keys=True)
def get_job(job_id: str):
    with services().database.connect() as conn:
        view = queries.get(conn, job_id, _owner())
    # An unfinished job tells its poller when to ask again, like the 202 that announced it.
    return ok(job_data(view), headers={} if view.status.is_terminal else {"Retry-After": "1"})


@bp.get("")
@documented(summary="Your jobs, newest first, one cursor page at a time", tag="jobs",
            query=JobListQuery, responses={200: JobPage, 400: ERROR})
@login_required(api_keys=True)
def list_jobs():
    query = parse_query(JobListQuery)
    with services().database.connect() as conn:
        views, next_cursor = queries.page(conn, _owner(), status=query.status, kind=query.kind,
                                          cursor=query.cursor, limit=query.limit)
    return ok(JobPage(items=[job_data(view) for view in views], next_cursor=next_cursor))


@bp.post("/<job_id>/cancel")
@documented(summary="Cancel a queued or running job", tag="jobs",
            responses={200: JobData, 404: ERROR, 409: ERROR})
@login_required(api_keys=True)
def cancel_job(job_id: str):
    return ok(job_data(services().lifecycle.cancel(job_id, _owner())), "Job canceled")


@bp.get("/<job_id>/stream")
@documented(summary="A streamed job's events, replayed from the start or from Last-Event-ID",
            tag="jobs", headers=("Last-Event-ID",),
            description="Server-sent events while the job runs and for STREAM_RETENTION_SECONDS "
                        "after it ends (then its final chunk from the job row): OpenAI "
                        "chat.completion.chunk objects, the usage chunk, then [DONE]. Only "
                        "for jobs submitted with stream: true (409 otherwise).",
            responses={200: Raw("text/event-stream", description="The job's events"),
                       400: ERROR, 404: ERROR, 409: ERROR})
@login_required(api_keys=True)
def job_stream(job_id: str):
    svc = services()
    after = request.headers.get("Last-Event-ID")
    if after is not None and not _EVENT_ID.match(after):
        raise ValidationFailed("Invalid Last-Event-ID header", errors=[{
            "field": "Last-Event-ID", "message": "an event id from this stream, like 1-0"}])
    with svc.database.connect() as conn:
        view = queries.get(conn, job_id, _owner())
        job_request = queries.request_of(conn, job_id) if view.kind == JobKind.CHAT else None
    if not (job_request or {}).get("stream"):
        raise Conflict("This job was not submitted with stream: true; poll GET "
                       f"/api/jobs/{job_id} instead", code="job_not_streamed")
    return sse_response(svc, view, _owner(), after=after,
                        include_usage=bool(job_request.get("include_usage")),
                        headers={"X-Job-ID": view.id})


_MEDIA_RESPONSES = {
    200: Raw("image/png", description="The file's bytes (its own content type: image/*, "
                                      "video/mp4)"),
    206: Raw("video/mp4", description="The byte range asked for (Range: bytes=...)"),
    302: Raw("", description="Where the bucket serves it (S3 storage; it honours Range)"),
    304: Raw("", description="Not modified (If-None-Match, If-Modified-Since)"),
    401: ERROR, 404: ERROR, 416: Raw("", description="The range is outside the file"),
    503: ERROR}


@bp.get("/<job_id>/media/<int:index>")
@documented(summary="A stored video (index 0) or its poster frame (index 1): by the signed "
                    "link the API gave, or as its owner; HTTP Range supported", tag="jobs",
            auth=False, responses=_MEDIA_RESPONSES)
def job_media(job_id: str, index: int):
    return job_image(job_id, index)


@bp.get("/<job_id>/images/<int:index>")
@documented(summary="A stored image: by the signed link the API gave, or as its owner",
            tag="jobs", auth=False, responses=_MEDIA_RESPONSES)
def job_image(job_id: str, index: int):
    """A stored file: by signed link, or for the owner (or an admin) with a token. Served
    from the file with werkzeug's conditional responses (ETag, Range, 206), so a browser's
    <video> can seek; a bucket serves its own (with Range) by presigned URL."""
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
    path = svc.image_store.local_path(image.key)
    if path is None:
        raise NotFound("Image not found", code="image_not_found")
    response: Response = send_file(path, mimetype=image.content_type, conditional=True,
                                   etag=image.sha256 or True, max_age=3600)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _stored_image(view: JobView | None, index: int) -> GeneratedImage:
    copies = dict(view.result.copies) if view is not None \
        and view.status == JobStatus.SUCCEEDED and isinstance(view.result, CopiedResult) \
        else {}
    copy = copies.get(index)
    if copy is None or not copy.stored:
        raise NotFound("Image not found", code="image_not_found")
    return copy
