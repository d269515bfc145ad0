"""Submit a job and answer for it: wait (sync) or hand back the job to poll (async).

`Prefer: respond-async` answers 202 at once; `Prefer: wait=N` shortens the wait. A job that
is not done in time is answered with 202 and its job, never with a gateway timeout.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable

from flask import g, request
from flask_jwt_extended import current_user

from common.errors import ValidationFailed
from common.jobs import lifecycle as jobs
from common.jobs.models import Job, JobKind, JobStatus
from common.jobs.submission import submit_job
from web.context import db_session, services
from web.envelope import envelope, ok
from web.serializers import failure_status, job_url, serialize_job

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
                      render_result: Callable[[Job], dict],
                      settled: Callable[[Job], bool] = lambda job: job.status.is_terminal):
    """The whole request cycle of a job-backed endpoint. A synchronous request waits until
    `settled(job)` (by default: the job finished) or its time is up."""
    svc = services()
    timeout = wait_seconds()
    new_id = str(uuid.uuid4())
    with contextlib.ExitStack() as listening:
        # Listen before the job is published, so the wake-up of a fast job cannot be missed
        # and the wait needs no read before it.
        wake = listening.enter_context(svc.waiter.listening(new_id)) if timeout > 0 else None
        job, created = submit_job(
            session=db_session(), celery=svc.celery, settings=svc.settings,
            user_id=current_user.id, kind=kind, model=model, request=job_request,
            idempotency_key=idempotency_key(), correlation_id=g.request_id, job_id=new_id)
        if wake is not None and not settled(job):
            if not created:  # a replay: its job may have finished long ago, so read first
                wake = listening.enter_context(svc.waiter.listening(job.id))
            job = _wait_for(job.id, wake, timeout, settled, check_first=not created)
    headers = {"X-Job-ID": job.id}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return answer(job, render_result, headers)


def _wait_for(job_id: str, wake: threading.Event, timeout: float,
              settled: Callable[[Job], bool], *, check_first: bool) -> Job:
    session = db_session()
    latest: list[Job] = []

    def finished() -> bool:
        latest[:] = [jobs.reload(session=session, job_id=job_id)]
        # End the read at once: the connection goes back to the pool while this request
        # waits, and (no expiry on commit) the row stays loaded for the answer.
        session.commit()
        return settled(latest[0])

    services().waiter.wait_until(wake, finished, timeout, check_first=check_first)
    return latest[0]


def answer(job: Job, render_result: Callable[[Job], dict], headers: dict):
    """200 with the result, an error status with the job, or 202 with the job to poll."""
    if job.status == JobStatus.SUCCEEDED:
        return ok(render_result(job), headers=headers)
    if job.status.is_terminal:
        status = failure_status(job)
        if status == 503:
            headers["Retry-After"] = "30"
        message = ("Job was canceled" if job.status == JobStatus.CANCELED
                   else f"{job.error_code}: {job.error_message}")
        return envelope(status, message, serialize_job(job), headers=headers)
    headers["Location"] = job_url(job.id)
    headers["Retry-After"] = "1"
    return ok(serialize_job(job), "Job accepted; poll its Location for the result", status=202,
              headers=headers)
