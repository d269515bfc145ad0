"""Qwen chat completions, run as jobs."""

from __future__ import annotations

from flask import Blueprint

from common.models import Job, JobKind
from web.auth import login_required
from web.context import services
from web.job_responses import submit_and_answer
from web.schemas import ChatCompletionRequest
from web.validation import parse_body

bp = Blueprint("chat", __name__, url_prefix="/api/bailian")


def _completion(job: Job) -> dict:
    return {**job.result, "job_id": job.id}


@bp.post("/chat/completions")
@login_required
def chat_completions():
    body = parse_body(ChatCompletionRequest, {"chat_models": services().settings.chat_models})
    return submit_and_answer(kind=JobKind.CHAT, model=body.model,
                             job_request=body.job_request(), render_result=_completion)
