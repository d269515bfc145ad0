"""Qwen chat completions, run as jobs."""

from __future__ import annotations

from flask import Blueprint

from common.jobs.models import JobKind
from web.authentication import login_required
from web.context import services
from web.job_submission import submit_and_answer
from web.openapi import ERROR, documented
from web.request_models import ChatCompletionRequest
from web.response_models import ChatCompletionData, JobData
from web.serializers import chat_completion_data
from web.validation import parse_body

bp = Blueprint("chat", __name__, url_prefix="/api/bailian")


@bp.post("/chat/completions")
@documented(summary="Qwen chat completion, run as a job", tag="jobs", body=ChatCompletionRequest,
            headers=("Idempotency-Key", "Prefer"),
            description="Waits for the job (at most SYNC_WAIT_SECONDS) and answers 200 with "
                        "the completion, or 202 with the job to poll. A failed job answers "
                        "with its upstream code: 400 for content DashScope refused, 502 for "
                        "upstream faults, 503 when throttling outlasted the retries, 504 for "
                        "timeouts; 409 when canceled, or for a reused Idempotency-Key.",
            responses={200: ChatCompletionData, 202: JobData, 400: [ERROR, JobData],
                       409: [ERROR, JobData], 429: ERROR, 502: JobData, 503: [ERROR, JobData],
                       504: JobData})
@login_required
def chat_completions():
    body = parse_body(ChatCompletionRequest, {"chat_models": services().settings.chat_models})
    return submit_and_answer(kind=JobKind.CHAT, model=body.model,
                             job_request=body.job_request(), render_result=chat_completion_data)
