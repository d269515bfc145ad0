"""The OpenAI-compatible surface: `/v1/chat/completions`, `/v1/embeddings`,
`/v1/images/generations` and `/v1/models`, OpenAI's objects exactly, with no envelope, so the
official SDKs and every client built on them work unchanged.

A chat completion here is the same job as on /api/bailian/chat/completions (same validation,
tiers, rate-limit budget, idempotency, usage row and cost); it waits until the job is settled
(OpenAI clients cannot poll), bounded by the job's own deadline. Errors are OpenAI's error
object (web/openai_errors.py).

Embeddings run in the request (common/jobs/embedding.py), still as a job row with its usage
row, budget and rate limit. An image generation is the Wanx job of /api/bailian/generation,
waited for like a chat completion, answered with our stored copies (never DashScope's
24-hour URLs).
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
import uuid

from flask import Blueprint, g, jsonify
from flask_jwt_extended import current_user

from common.errors import NotFound, ValidationFailed
from common.jobs.embedding import EmbeddingCall
from common.jobs.models import JobKind, JobStatus
from common.jobs.results import ChatCompletion, ImageResult
from common.jobs.views import JobView
from common.upstream.embedding_models import EMBEDDING_MODELS
from web.authentication import api_key, login_required
from web.context import services
from web.error_responses import error_response
from web.job_submission import admit, submit_and_stream, submit_and_wait
from web.openai_models import (
    EmbeddingList,
    ImagesResponse,
    Model,
    ModelList,
    OpenAIChatRequest,
    OpenAIEmbeddingRequest,
    OpenAIError,
    OpenAIImageRequest,
    refuse_unsupported,
    refuse_unsupported_image_parameters,
)
from web.openapi import Raw, documented
from web.request_models import ChatCompletionRequest, GenerationRequest
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
    payload = _json_object()  # a copy: refuse_unsupported drops the neutral values from it
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
    view, headers = submit_and_wait(kind=JobKind.CHAT, model=body.model,
                                    job_request=body.job_request(),
                                    timeout=_wait(settings.job_deadline_seconds),
                                    webhook=body.webhook_target())
    if view.status == JobStatus.SUCCEEDED:
        response = jsonify(view.result.model_dump(mode="json"))
        response.headers.update(headers)
        return response
    return _job_error(view, headers)


@bp.post("/embeddings")
@documented(summary="Text embeddings, OpenAI-compatible (run in the request)", tag="openai",
            body=OpenAIEmbeddingRequest,
            description="OpenAI's embeddings list; X-Job-ID names the call's job (its usage "
                        "row). encoding_format base64 is little-endian float32, as OpenAI's. "
                        "Limits per model (texts per request, dimensions) are 400s naming the "
                        "parameter; unknown models are 404 model_not_found.",
            responses={200: Raw(JSON, EmbeddingList, "OpenAI's embeddings list"), **ERRORS})
@login_required(api_keys=True)
def embeddings():
    svc = services()
    body = validate(OpenAIEmbeddingRequest, _body_naming_one_of(svc.settings.embedding_models))
    limits = EMBEDDING_MODELS[body.model]
    if errors := body.rule_errors(limits):
        raise ValidationFailed(errors=errors)
    call = EmbeddingCall(model=body.model, texts=body.texts,
                         dimension=body.dimensions or limits.default_dimension,
                         encoding_format=body.encoding_format)
    job_id = str(uuid.uuid4())
    charge, _ = admit(kind=JobKind.EMBEDDING, model=body.model,
                      job_request=call.job_request(), job_id=job_id)
    outcome = svc.embeddings.embed(call, user_id=current_user.id, job_id=job_id,
                                   correlation_id=g.request_id, charge=charge)
    headers = {"X-Job-ID": job_id}
    if outcome.vectors is None:
        view = outcome.view
        if failure_status(view) == 400:
            # DashScope refused the texts (a row over its token limit: only its tokenizer
            # can tell); the rest was checked above.
            return error_response(400, view.error_message or "", code=view.error_code,
                                  errors=[{"field": "input", "message": view.error_message}],
                                  headers={**headers, "x-should-retry": "false"})
        return _job_error(view, headers)
    encode = _base64 if body.encoding_format == "base64" else (lambda vector: vector)
    # Built as plain dicts: up to 10 x 2048 floats, which a model's validation would walk.
    response = jsonify({
        "object": "list", "model": body.model,
        "data": [{"object": "embedding", "index": index, "embedding": encode(vector)}
                 for index, vector in enumerate(outcome.vectors)],
        "usage": {"prompt_tokens": outcome.usage.input_tokens,
                  "total_tokens": outcome.usage.total_tokens}})
    response.headers.update(headers)
    return response


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32, which its SDKs decode."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


@bp.post("/images/generations")
@documented(summary="Image generation, OpenAI-compatible (a Wanx job, waited for)",
            tag="openai", body=OpenAIImageRequest,
            description="OpenAI's images response with our stored copies: signed links "
                        "(url) or the bytes (b64_json); X-Job-ID names the job. model "
                        "defaults to V1_DEFAULT_IMAGE_MODEL; size WIDTHxHEIGHT as Wanx allows "
                        "it. OpenAI parameters Wanx lacks (quality, style, ...) are 400s "
                        "naming them.",
            responses={200: Raw(JSON, ImagesResponse, "OpenAI's images response"), **ERRORS})
@login_required(api_keys=True)
def images_generations():
    svc = services()
    settings = svc.settings
    payload = _body_naming_one_of(settings.image_models)
    openai_request = validate(OpenAIImageRequest, refuse_unsupported_image_parameters(payload))
    body = validate(GenerationRequest,
                    openai_request.platform_request(settings.v1_default_image_model),
                    {"image_models": settings.image_models})
    rules = settings.image_models[body.model]
    if errors := body.rule_errors(rules):
        # The platform's names (parameters.size) as the /v1 request spells them (size).
        raise ValidationFailed(errors=[{**e, "field": e["field"].removeprefix("parameters.")}
                                       for e in errors])
    view, headers = submit_and_wait(kind=JobKind.IMAGE, model=body.model,
                                    job_request=body.job_request(rules),
                                    timeout=_wait(settings.image_job_deadline_seconds))
    if view.status != JobStatus.SUCCEEDED or not view.settled:
        return _job_error(view, headers)
    result: ImageResult = view.result
    images = result.images
    if not all(image.stored for _, image in images):
        # Never DashScope's URL: it dies within a day. The copy is retried; the job has the
        # images once it is stored.
        headers["x-should-retry"] = "false"
        return error_response(502, f"The images could not be stored yet (job {view.id}; "
                                   f"GET /api/jobs/{view.id} has them once stored)",
                              code="image_not_stored", headers=headers)
    if openai_request.response_format == "b64_json":
        data = [{"b64_json": base64.b64encode(svc.image_store.get(image.key) or b"").decode()}
                for _, image in images]
    else:
        data = [{"url": svc.shapes.signed_image_url(view.id, index, image.key)}
                for index, image in images]
    created = int(view.created_at.replace(tzinfo=dt.UTC).timestamp())
    response = jsonify({"created": created, "data": data})
    response.headers.update(headers)
    return response


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
            + [Model(id=name, kind="embedding") for name in settings.embedding_models]
            if key is None or key.allows(model.id)]


def _json_object() -> dict:
    """A copy of the JSON body, which must be an object."""
    payload = request_json()
    if not isinstance(payload, dict):
        raise ValidationFailed("Request body must be a JSON object",
                               errors=[{"field": "body", "message": "expected a JSON object"}])
    return dict(payload)


def _body_naming_one_of(models) -> dict:
    """A copy of the JSON body; a model it names outside `models` is OpenAI's 404."""
    payload = _json_object()
    model = payload.get("model")
    if isinstance(model, str) and model not in models:
        raise _model_not_found(model)
    return payload


def _wait(deadline_seconds: float) -> float:
    """How long a /v1 request waits for its job: V1_WAIT_SECONDS, else until the job's own
    deadline (OpenAI clients cannot poll)."""
    wait = services().settings.v1_wait_seconds
    return deadline_seconds + WAIT_MARGIN_SECONDS if wait is None else wait


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
