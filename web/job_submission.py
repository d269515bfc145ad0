"""Submit a job and answer for it: wait (sync), hand back the job to poll (async), or stream
its deltas as they come.

`Prefer: respond-async` answers 202 at once; `Prefer: wait=N` shortens the wait. A job that
is not settled in time is answered with 202 and its job, never with a gateway timeout. A
streamed job is answered with its events (web/streaming.py) from the moment it is committed;
errors found before that (validation, limits) keep their usual shape and status.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable

from flask import g, request
from flask_jwt_extended import current_user
from pydantic import BaseModel

from common.errors import ValidationFailed
from common.jobs import queries, submission
from common.jobs.models import JobKind, JobStatus
from common.jobs.views import JobView
from common.webhooks.targets import WebhookTarget
from web.context import services
from web.envelope import envelope, ok
from web.serializers import failure_status, job_data, job_url
from web.streaming import CANCEL_ON_DISCONNECT, sse_response

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_WAIT = re.compile(r"\bwait\s*=\s*(\d+)")


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed("Invalid Idempotency-Key header", errors=[{
            "field": "Idempotency-Key",
            "message": "1 to 255 printable ASCII characters without spaces"}])
    return key


def wait_seconds() -> float:
    """How long this request may wait for its job (0 for respond-async)."""
    prefer = request.headers.get("Prefer", "").lower()
    if "respond-async" in prefer:
        return 0.0
    limit = services().settings.sync_wait_seconds
    asked = _WAIT.search(prefer)
    return min(limit, float(asked.group(1))) if asked else limit


def submit_and_answer(*, kind: JobKind, model: str, job_request: dict,
                      render_result: Callable[[JobView], BaseModel],
                      webhook: WebhookTarget | None = None):
    """The whole request cycle of a job-backed endpoint: a synchronous request waits until the
    job is settled or its time is up."""
    view, headers = submit_and_wait(kind=kind, model=model, job_request=job_request,
                                    timeout=wait_seconds(), webhook=webhook)
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
    with contextlib.ExitStack() as stack:
        # Listen before the job is published, so the wake-up of a fast job cannot be missed
        # and the wait needs no read before it.
        waiting = stack.enter_context(svc.waiter.listening(new_id)) if timeout > 0 else None
        view, created = submission.submit(
            lifecycle=svc.lifecycle, settings=svc.settings, user_id=current_user.id,
            kind=kind, model=model, request=job_request, idempotency_key=key,
            correlation_id=g.request_id, job_id=new_id, webhook=webhook)
        if waiting is not None and not view.settled:
            if not created:  # a replay: its job may have finished long ago, so read first
                waiting = stack.enter_context(svc.waiter.listening(view.id))
            view = svc.waiter.wait(waiting, lambda: _read(view.id), timeout,
                                   check_first=not created) or view
    headers = {"X-Job-ID": view.id}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return view, headers


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
