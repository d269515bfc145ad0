"""The OpenAI-compatible surface: `/v1/chat/completions` and `/v1/models`, OpenAI's objects
exactly, with no envelope, so the official SDKs and every client built on them work unchanged.

A chat completion here is the same job as on /api/bailian/chat/completions (same validation,
tiers, rate-limit budget, idempotency, usage row and cost); it waits until the job is settled
(OpenAI clients cannot poll), bounded by the job's own deadline. Errors are OpenAI's error
object (web/openai_errors.py).
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from common.errors import NotFound, ValidationFailed
from common.jobs.models import JobKind, JobStatus
from common.jobs.results import ChatCompletion
from common.jobs.views import JobView
from web.authentication import api_key, login_required
from web.context import services
from web.error_responses import error_response
from web.job_submission import submit_and_stream, submit_and_wait
from web.openai_models import Model, ModelList, OpenAIChatRequest, OpenAIError, refuse_unsupported
from web.openapi import Raw, documented
from web.request_models import ChatCompletionRequest
from web.serializers import failure_status
from web.validation import request_json, validate

bp = Blueprint("openai", __name__, url_prefix="/v1")

JSON = "application/json"
ERRORS = {status: Raw(JSON, OpenAIError, "OpenAI's error object")
          for status in (400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504)}
# A settled job answers within its deadline; the margin covers the last transition.
WAIT_MARGIN_SECONDS = 5


@bp.post("/chat/completions")
@documented(summary="Chat completion, OpenAI-compatible (the job waits until settled)",
            tag="openai", body=OpenAIChatRequest,
            headers=("Idempotency-Key", "X-Cancel-On-Disconnect"),
            description="OpenAI's chat.completion object; X-Job-ID names the job behind it. "
                        "With stream: true, text/event-stream of chat.completion.chunk "
                        "objects and [DONE] (stream_options.include_usage adds the usage "
                        "chunk, equal to the job's usage row). "
                        "Unknown models are 404 model_not_found; parameters DashScope does "
                        "not take are 400 naming the parameter.",
            responses={200: Raw(JSON, ChatCompletion, "OpenAI's chat.completion object"),
                       **ERRORS})
@login_required(api_keys=True)
def chat_completions():
    settings = services().settings
    payload = request_json()
    if not isinstance(payload, dict):
        raise ValidationFailed("Request body must be a JSON object",
                               errors=[{"field": "body", "message": "expected a JSON object"}])
    payload = dict(payload)  # refuse_unsupported drops the neutral values from its copy
    model = payload.get("model")
    if isinstance(model, str) and model not in settings.chat_models:
        raise _model_not_found(model)
    refuse_unsupported(payload)
    openai_request = validate(OpenAIChatRequest, payload)
    body = validate(ChatCompletionRequest, openai_request.platform_request(),
                    {"chat_models": settings.chat_models})
    if errors := body.rule_errors(settings):
        raise ValidationFailed(errors=errors)
    if body.stream:
        return submit_and_stream(kind=JobKind.CHAT, model=body.model,
                                 job_request=body.job_request(), webhook=body.webhook_target())
    wait = settings.v1_wait_seconds
    if wait is None:
        wait = settings.job_deadline_seconds + WAIT_MARGIN_SECONDS
    view, headers = submit_and_wait(kind=JobKind.CHAT, model=body.model,
                                    job_request=body.job_request(), timeout=wait,
                                    webhook=body.webhook_target())
    if view.status == JobStatus.SUCCEEDED:
        response = jsonify(view.result.model_dump(mode="json"))
        response.headers.update(headers)
        return response
    return _job_error(view, headers)


@bp.get("/models")
@documented(summary="The models this deployment enables (OpenAI's list shape)", tag="openai",
            responses={200: Raw(JSON, ModelList, "OpenAI's model list"), **ERRORS})
@login_required(api_keys=True)
def list_models():
    return jsonify(ModelList(data=_models()).model_dump(mode="json"))


@bp.get("/models/<path:model_id>")
@documented(summary="One model (OpenAI's model object)", tag="openai",
            responses={200: Raw(JSON, Model, "OpenAI's model object"), **ERRORS})
@login_required(api_keys=True)
def get_model(model_id: str):
    found = next((m for m in _models() if m.id == model_id), None)
    if found is None:
        raise _model_not_found(model_id)
    return jsonify(found.model_dump(mode="json"))


def _models() -> list[Model]:
    """The enabled models; for an API key, those its allow-list names."""
    settings = services().settings
    key = api_key()
    return [model for model in
            [Model(id=name, kind="chat") for name in settings.chat_models]
            + [Model(id=name, kind="image") for name in settings.image_models]
            if key is None or key.allows(model.id)]


def _model_not_found(model: str) -> NotFound:
    return NotFound(f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found")


def _job_error(view: JobView, headers: dict[str, str]):
    """A job that ended without a result, as OpenAI's error object with the job's status."""
    if view.status == JobStatus.CANCELED:
        status, code, message = 409, "job_canceled", "The job was canceled"
    elif view.status.is_terminal:
        status, code = failure_status(view), (view.error_code or "upstream_error")
        message = f"{view.error_code}: {view.error_message}"
    else:  # V1_WAIT_SECONDS ran out first (by default only past the job's deadline)
        status, code, message = 504, "job_pending", "The job is still running"
    if status < 500:
        # A retry would only repeat the job's fate (the SDK honours this header).
        headers["x-should-retry"] = "false"
    return error_response(status, f"{message} (job {view.id})", code=code, headers=headers)
