"""Wanx image generation, run as jobs."""

from __future__ import annotations

from flask import Blueprint

from common.errors import ValidationFailed
from common.jobs.models import JobKind
from web.authentication import login_required
from web.context import services
from web.job_submission import submit_and_answer
from web.openapi import ERROR, documented
from web.request_models import GenerationRequest
from web.response_models import GenerationData, JobData
from web.serializers import generation_data
from web.validation import parse_body

bp = Blueprint("generation", __name__, url_prefix="/api/bailian")


@bp.post("/generation")
@documented(summary="Wanx text-to-image, run as a job", tag="jobs", body=GenerationRequest,
            headers=("Idempotency-Key", "Prefer"),
            description="Like chat: 200 with our stored images (signed links) once the task "
                        "finished and its images are copied, or 202 with the job to poll.",
            responses={200: GenerationData, 202: JobData, 400: [ERROR, JobData],
                       409: [ERROR, JobData], 429: ERROR, 502: JobData, 503: [ERROR, JobData],
                       504: JobData})
@login_required(api_keys=True)
def generation():
    body = parse_body(GenerationRequest, {"image_models": services().settings.image_models})
    if errors := body.rule_errors():
        raise ValidationFailed(errors=errors)
    return submit_and_answer(kind=JobKind.IMAGE, model=body.model,
                             job_request=body.job_request(), render_result=generation_data,
                             webhook=body.webhook_target())
