"""Qwen chat completions, run as jobs."""

from __future__ import annotations

from flask import Blueprint

from common.errors import ValidationFailed
from common.jobs.models import JobKind
from web.authentication import login_required
from web.context import services
from web.job_submission import submit_and_answer, submit_and_stream, wait_seconds
from web.openapi import ERROR, documented
from web.request_models import ChatCompletionRequest
from web.response_models import ChatCompletionData, JobData
from web.serializers import chat_completion_data
from web.validation import parse_body

bp = Blueprint("chat", __name__, url_prefix="/api/bailian")


@bp.post("/chat/completions")
@documented(summary="Qwen chat completion, run as a job", tag="jobs", body=ChatCompletionRequest,
            headers=("Idempotency-Key", "Prefer", "X-Cancel-On-Disconnect"),
            description="Waits for the job (at most SYNC_WAIT_SECONDS) and answers 200 with "
                        "the completion, or 202 with the job to poll. A failed job answers "
                        "with its upstream code: 400 for content DashScope refused, 502 for "
                        "upstream faults, 503 when throttling outlasted the retries, 504 for "
                        "timeouts; 409 when canceled, or for a reused Idempotency-Key. "
                        "With stream: true it answers text/event-stream: OpenAI "
                        "chat.completion.chunk objects, then [DONE]; a job that fails or is "
                        "canceled ends the stream with OpenAI's error object. A client that "
                        "disconnects leaves the job running unless it sent "
                        "X-Cancel-On-Disconnect: true.",
            responses={200: ChatCompletionData, 202: JobData, 400: [ERROR, JobData],
                       409: [ERROR, JobData], 429: ERROR, 502: JobData, 503: [ERROR, JobData],
                       504: JobData})
@login_required(api_keys=True)
def chat_completions():
    settings = services().settings
    body = parse_body(ChatCompletionRequest, {"chat_models": settings.chat_models})
    if errors := body.rule_errors(settings):
        raise ValidationFailed(errors=errors)
    if body.stream and wait_seconds() > 0:
        return submit_and_stream(kind=JobKind.CHAT, model=body.model,
                                 job_request=body.job_request(), webhook=body.webhook_target())
    return submit_and_answer(kind=JobKind.CHAT, model=body.model,
                             job_request=body.job_request(), render_result=chat_completion_data,
                             webhook=body.webhook_target())
