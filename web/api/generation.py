"""Wanx image generation, run as jobs."""

from __future__ import annotations

from flask import Blueprint

from common.errors import ValidationFailed
from common.jobs.models import Job, JobKind, JobStatus
from web.authentication import login_required
from web.context import services
from web.image_links import render_generation
from web.job_submission import submit_and_answer
from web.openapi import ERROR, documented
from web.request_models import GenerationRequest
from web.response_models import GenerationData, JobData
from web.validation import parse_body

bp = Blueprint("generation", __name__, url_prefix="/api/bailian")


def images_settled(job: Job) -> bool:
    """Finished, and (when it succeeded) a first attempt made at copying each image: a waiting
    client gets our links, or DashScope's while a failed copy is being retried."""
    if not job.status.is_terminal:
        return False
    if job.status != JobStatus.SUCCEEDED or job.next_action_at is None:
        return True
    images = [entry for entry in job.result["output"]["results"] if "upstream_url" in entry]
    return all(entry.get("stored") or entry.get("storage_error") for entry in images)


@bp.post("/generation")
@documented(summary="Wanx text-to-image, run as a job", tag="jobs", body=GenerationRequest,
            headers=("Idempotency-Key", "Prefer"),
            description="Like chat: 200 with our stored images (signed links) once the task "
                        "finished and its images are copied, or 202 with the job to poll.",
            responses={200: GenerationData, 202: JobData, 400: [ERROR, JobData],
                       409: [ERROR, JobData], 429: ERROR, 502: JobData, 503: [ERROR, JobData],
                       504: JobData})
@login_required
def generation():
    body = parse_body(GenerationRequest, {"image_models": services().settings.image_models})
    if errors := body.rule_errors():
        raise ValidationFailed(errors=errors)
    return submit_and_answer(kind=JobKind.IMAGE, model=body.model,
                             job_request=body.job_request(), render_result=render_generation,
                             settled=images_settled)
