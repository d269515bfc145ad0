"""Submit a job and answer for it: wait (sync), hand back the job to poll (async), or stream
its deltas as they come.

`Prefer: respond-async` answers 202 at once; `Prefer: wait=N` shortens the wait. A job that
is not settled in time is answered with 202 and its job, never with a gateway timeout. A
streamed job is answered with its events (web/streaming.py) from the moment it is committed;
errors found before that (validation, limits) keep their usual shape and status.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

import redis
from flask import g, request
from flask_jwt_extended import current_user
from pydantic import BaseModel

from common.billing.budgets import Estimate, Payer
from common.billing.token_limits import windows
from common.errors import (
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
)
from common.infra.metrics import RATE_LIMIT_REJECTIONS, RATE_LIMIT_STORAGE_ERRORS
from common.infra.settings import BudgetSpec
from common.jobs import queries, submission
from common.jobs.input_images import reference_errors
from common.jobs.models import JobKind, JobStatus
from common.jobs.views import JobView
from common.webhooks.targets import WebhookTarget
from web.authentication import api_key
from web.context import services
from web.envelope import envelope, ok
from web.openai_errors import is_openai_request
from web.serializers import failure_status, job_data, job_url
from web.streaming import CANCEL_ON_DISCONNECT, sse_response
from web.validation import parse_body, validate

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
# A task request's image field -> the upstream input field it becomes
_IMAGE_FIELDS = {"base_image_url": "base_image", "mask_image_url": "mask_image",
                 "img_url": "image", "first_frame_url": "first_frame",
                 "last_frame_url": "last_frame"}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_WAIT = re.compile(r"\bwait\s*=\s*(\d+)")


def task_request(request_model: type[M], table: str, payload: dict | None = None
                 ) -> tuple[M, dict]:
    """A Wan task's body checked the one way every entry to it checks it (the API's task
    endpoints and the console's playground): against the model table in settings named
    `table`, that model's own rules, and the input images this user may use. `payload` is a
    form's fields shaped as the API's JSON (None: the request's JSON body). Answers the body
    and the job request the worker sends."""
    svc = services()
    models = getattr(svc.settings, table)
    context = {table: models}
    body = parse_body(request_model, context) if payload is None \
        else validate(request_model, payload, context)
    rules = models[body.model]
    _refuse(body.rule_errors(rules))
    job_request = body.job_request(rules)
    if images := job_request.get("images"):
        _refuse(reference_errors(svc.database, current_user.id, images, _IMAGE_FIELDS))
    return body, job_request


def _refuse(errors: list[dict]) -> None:
    if errors:
        raise ValidationFailed(errors=errors)


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed("Invalid Idempotency-Key header", errors=[{
            "field": "Idempotency-Key",
            "message": "1 to 255 printable ASCII characters without spaces"}])
    return key


def wait_seconds(*, sync_by_default: bool = True) -> float:
    """How long this request may wait for its job (0 for respond-async). Endpoints whose jobs
    take minutes (video) answer 202 at once unless the client asks `Prefer: wait=N`."""
    prefer = request.headers.get("Prefer", "").lower()
    if "respond-async" in prefer:
        return 0.0
    limit = services().settings.sync_wait_seconds
    asked = _WAIT.search(prefer)
    if asked:
        return min(limit, float(asked.group(1)))
    return limit if sync_by_default else 0.0


def submit_and_answer(*, kind: JobKind, model: str, job_request: dict,
                      render_result: Callable[[JobView], BaseModel],
                      webhook: WebhookTarget | None = None, sync_by_default: bool = True):
    """The whole request cycle of a job-backed endpoint: a synchronous request waits until the
    job is settled or its time is up."""
    view, headers = submit_and_wait(kind=kind, model=model, job_request=job_request,
                                    timeout=wait_seconds(sync_by_default=sync_by_default),
                                    webhook=webhook)
    return answer(view, render_result, headers)


def owner() -> queries.Owner:
    return queries.Owner(user_id=current_user.id, is_admin=current_user.is_admin)


def submit_and_stream(*, kind: JobKind, model: str, job_request: dict,
                      webhook: WebhookTarget | None = None):
    """Commit the job and answer with its stream. A replayed Idempotency-Key streams the job
    it made, from its first event."""
    view, headers = submit_and_wait(kind=kind, model=model, job_request=job_request, timeout=0,
                                    webhook=webhook)
    return sse_response(services(), view, owner(),
                        include_usage=bool(job_request.get("include_usage")),
                        cancel_on_disconnect=cancel_on_disconnect(), headers=headers)


def cancel_on_disconnect() -> bool:
    value = request.headers.get(CANCEL_ON_DISCONNECT)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise ValidationFailed(f"Invalid {CANCEL_ON_DISCONNECT} header", errors=[{
            "field": CANCEL_ON_DISCONNECT, "message": "true or false"}])
    return value.lower() == "true"


def submit_and_wait(*, kind: JobKind, model: str, job_request: dict, timeout: float,
                    webhook: WebhookTarget | None = None) -> tuple[JobView, dict[str, str]]:
    """Submit the job (or find the one its Idempotency-Key names) and wait up to `timeout`
    seconds for it to settle; the job as it is then, and the headers every answer carries."""
    svc = services()
    new_id = str(uuid.uuid4())
    key = idempotency_key()
    charge, payer = admit(kind=kind, model=model, job_request=job_request, job_id=new_id)
    with contextlib.ExitStack() as stack:
        # Listen before the job is published, so the wake-up of a fast job cannot be missed
        # and the wait needs no read before it.
        waiting = stack.enter_context(svc.waiter.listening(new_id)) if timeout > 0 else None
        try:
            view, created = submission.submit(
                lifecycle=svc.lifecycle, settings=svc.settings, user_id=current_user.id,
                kind=kind, model=model, request=job_request, idempotency_key=key,
                correlation_id=g.request_id, job_id=new_id, webhook=webhook, charge=charge)
        except BaseException:
            _return_tokens(new_id, payer)
            raise
        if not created:  # a replay: the tokens counted for a new job were not used
            _return_tokens(new_id, payer)
        if waiting is not None and not view.settled:
            if not created:  # a replay: its job may have finished long ago, so read first
                waiting = stack.enter_context(svc.waiter.listening(view.id))
            view = svc.waiter.wait(waiting, lambda: _read(view.id), timeout,
                                   check_first=not created) or view
    headers = {"X-Job-ID": view.id}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return view, headers


def admit(*, kind: JobKind, model: str, job_request: dict, job_id: str):
    """What every job submission passes before its job exists: the API key's model
    allow-list, the tokens-per-minute limits (tier and key), and the plan of its budget
    reservation (made in the job's own transaction by the returned `charge`)."""
    svc = services()
    key = api_key()
    if key is not None and not key.allows(model):
        if is_openai_request():
            raise NotFound(f"The model `{model}` does not exist or you do not have access "
                           "to it.", code="model_not_found")
        raise PermissionDenied(f"This API key may not use the model {model}",
                               code="model_not_allowed")
    state = g.get("user_state")  # what authentication read of the user (cached row)
    payer = Payer(user_id=current_user.id, role=current_user.role,
                  api_key_id=key.id if key else None, key_budget=key.budget if key else None,
                  user_budget=_budget_of(state), user_budget_known=state is not None)
    budgets = svc.lifecycle.budgets
    estimate = budgets.estimate(kind, model, job_request)
    plan = budgets.plan(svc.database, payer, estimate)
    if kind == JobKind.CHAT and svc.settings.rate_limits_enabled:
        _admit_tokens(job_id, payer, estimate)
    return (lambda conn, new_id, now: budgets.reserve(conn, job_id=new_id, plan=plan,
                                                      now=now)), payer


def _budget_of(state) -> BudgetSpec | None:
    if state is None or not state.budget_amount:
        return None
    return BudgetSpec(amount=Decimal(state.budget_amount), period=state.budget_period)


def _admit_tokens(job_id: str, payer: Payer, estimate: Estimate) -> None:
    svc = services()
    key = api_key()
    names = windows(payer.user_id, payer.api_key_id)
    limits = [(names[0], svc.settings.tpm_limits[payer.role])]
    if key is not None:
        limits.append((names[1], key.tpm_limit if key.tpm_limit is not None
                       else svc.settings.tpm_limits[payer.role]))
    try:
        decision = svc.token_limits.admit(job_id=job_id, tokens=estimate.tokens, limits=limits)
    except redis.RedisError as exc:
        # Like the request limits, closed by default; "local" admits (and counts it).
        policy = svc.settings.rate_limit_on_redis_down
        RATE_LIMIT_STORAGE_ERRORS.labels(policy).inc()
        logger.warning("token limit storage unavailable policy=%s: %s", policy, exc)
        if policy == "closed":
            raise ServiceUnavailable("Rate limiting is temporarily unavailable; retry "
                                     "shortly", code="rate_limit_unavailable") from exc
        return
    g.token_limit = decision
    if not decision.granted:
        RATE_LIMIT_REJECTIONS.labels("tokens", payer.role.value).inc()
        raise TooManyRequests(
            f"Token rate limit exceeded: this request may use {estimate.tokens} tokens and "
            f"{decision.remaining} of {decision.limit} per minute are left",
            headers={"Retry-After": str(math.ceil(decision.retry_after))})
    g.tokens_admitted = True


def _return_tokens(job_id: str, payer: Payer) -> None:
    """A job that was not created uses none of the tokens admitted for it."""
    if not g.pop("tokens_admitted", False):
        return
    try:
        services().token_limits.correct(job_id=job_id, user_id=payer.user_id,
                                        api_key_id=payer.api_key_id, tokens=0)
    except redis.RedisError as exc:
        logger.warning("admitted tokens not returned job_id=%s: %s", job_id, exc)


def _read(job_id: str) -> JobView:
    with services().database.connect() as conn:
        return queries.find(conn, job_id)


def answer(view: JobView, render_result: Callable[[JobView], BaseModel], headers: dict):
    """200 with the result, an error status with the job, or 202 with the job to poll."""
    if view.status == JobStatus.SUCCEEDED:
        return ok(render_result(view), headers=headers)
    if view.status.is_terminal:
        status = failure_status(view)
        if status == 503:
            headers["Retry-After"] = "30"
        message = ("Job was canceled" if view.status == JobStatus.CANCELED
                   else f"{view.error_code}: {view.error_message}")
        return envelope(status, message, job_data(view), headers=headers)
    headers["Location"] = job_url(view.id)
    headers["Retry-After"] = "1"
    return ok(job_data(view), "Job accepted; poll its Location for the result", status=202,
              headers=headers)
