"""Wan async tasks run as jobs: text-to-image, image editing and video generation. One path
for all three (submit_and_answer); what differs is each request's validation and its model
table in settings."""

from __future__ import annotations

from flask import Blueprint

from common.jobs.models import JobKind
from web.authentication import login_required
from web.job_submission import submit_and_answer, task_request
from web.openapi import ERROR, documented
from web.request_models import GenerationRequest, ImageEditRequest, VideoRequest
from web.response_models import GenerationData, JobData, VideoData
from web.serializers import generation_data, video_data

bp = Blueprint("generation", __name__, url_prefix="/api/bailian")
_TASK_RESPONSES = {202: JobData, 400: [ERROR, JobData], 409: [ERROR, JobData], 429: ERROR,
                   502: JobData, 503: [ERROR, JobData], 504: JobData}


@bp.post("/generation")
@documented(summary="Wan text-to-image, run as a job", tag="jobs", body=GenerationRequest,
            headers=("Idempotency-Key", "Prefer"),
            description="Like chat: 200 with our stored images (signed links) once the task "
                        "finished and its images are copied, or 202 with the job to poll.",
            responses={200: GenerationData, **_TASK_RESPONSES})
@login_required(api_keys=True)
def generation():
    return _submit_task(JobKind.IMAGE, GenerationRequest, "image_models", generation_data)


@bp.post("/image-edit")
@documented(summary="Wan image editing (wanx2.1-imageedit's functions), run as a job",
            tag="jobs", body=ImageEditRequest, headers=("Idempotency-Key", "Prefer"),
            description="Input images: an https URL (sent to DashScope as given), "
                        "{\"file_id\"} of an upload (POST /api/files) or {\"job_id\", "
                        "\"index\"} of one of your succeeded jobs' images (both sent through "
                        "DashScope's temporary file upload). Answers like /generation.",
            responses={200: GenerationData, **_TASK_RESPONSES})
@login_required(api_keys=True)
def image_edit():
    return _submit_task(JobKind.IMAGE_EDIT, ImageEditRequest, "image_edit_models",
                        generation_data)


@bp.post("/video")
@documented(summary="Wan text-to-video and image-to-video, run as a job", tag="jobs",
            body=VideoRequest, headers=("Idempotency-Key", "Prefer"),
            description="Videos take minutes: 202 with the job at once, unless Prefer: wait=N "
                        "(then 200 with the stored MP4's signed link if it is done by then). "
                        "The MP4 is served with HTTP Range support, priced per second.",
            responses={200: VideoData, **_TASK_RESPONSES})
@login_required(api_keys=True)
def video():
    return _submit_task(JobKind.VIDEO, VideoRequest, "video_models", video_data,
                        sync_by_default=False)


def _submit_task(kind: JobKind, request_model, table: str, render_result, *,
                 sync_by_default: bool = True):
    """The one path of every task endpoint: the checked body (task_request), then the job."""
    body, job_request = task_request(request_model, table)
    return submit_and_answer(kind=kind, model=body.model, job_request=job_request,
                             render_result=render_result, webhook=body.webhook_target(),
                             sync_by_default=sync_by_default)
