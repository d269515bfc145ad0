"""Thin tasks: decode arguments, call a use case in `common`. Nothing else.

Upstream faults are retried by the job services themselves (the lifecycle publishes the retry
as the job's next step); Celery's own retry covers only an unreachable database, Redis or
broker, bounded by max_retries and, above all, by the job's deadline.
"""

from __future__ import annotations

import logging

import redis
from sqlalchemy.exc import InterfaceError, OperationalError

from common.infra.log import bind_log_context
from common.jobs import sweeper
from common.jobs.queue import (
    CANCEL_IMAGE,
    CORRELATION_HEADER,
    DELIVER_WEBHOOK,
    POLL_IMAGE,
    RUN_CHAT,
    STORE_IMAGES,
    STREAM_CHAT,
    SUBMIT_IMAGE,
    SWEEP,
)
from worker import runtime
from worker.celery_app import app, settings

logger = logging.getLogger(__name__)

INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError,
                         redis.TimeoutError)
JOB_TASK = {"bind": True, "max_retries": 50, "autoretry_for": INFRASTRUCTURE_ERRORS,
            "retry_backoff": True, "retry_backoff_max": 60, "retry_jitter": True}


@app.task(name=RUN_CHAT, **JOB_TASK)
def run_chat(self, job_id: str) -> None:
    _bind(self, job_id)
    runtime.get().chat.run(job_id)


# The streams worker's gevent pool enforces time limits (the threads pool does not): a stream
# may last as long as its job, so only the job's deadline bounds it (plus the final commit).
STREAM_TIME_LIMIT = settings.job_deadline_seconds + 30


@app.task(name=STREAM_CHAT, **JOB_TASK, time_limit=STREAM_TIME_LIMIT,
          soft_time_limit=STREAM_TIME_LIMIT - 15)
def stream_chat(self, job_id: str) -> None:
    """A chat whose client streams it: the same use case, on the streams queue."""
    _bind(self, job_id)
    runtime.get().chat.run(job_id)


@app.task(name=SUBMIT_IMAGE, **JOB_TASK)
def submit_task(self, job_id: str) -> None:
    _bind(self, job_id)
    runtime.get().images.submit(job_id)


@app.task(name=POLL_IMAGE, **JOB_TASK)
def poll_image(self, job_id: str, polls: int) -> None:
    _bind(self, job_id)
    runtime.get().images.poll(job_id, polls)


@app.task(name=STORE_IMAGES, **JOB_TASK)
def store_images(self, job_id: str) -> None:
    _bind(self, job_id)
    runtime.get().image_copies.store_images(job_id)


@app.task(name=CANCEL_IMAGE, **JOB_TASK)
def cancel_task(self, job_id: str) -> None:
    _bind(self, job_id)
    runtime.get().images.cancel_upstream(job_id)


@app.task(name=DELIVER_WEBHOOK, **JOB_TASK)
def deliver_webhook(self, job_id: str) -> None:
    _bind(self, job_id)
    runtime.get().lifecycle.webhooks.deliver(job_id)


@app.task(name=SWEEP, ignore_result=True)
def sweep() -> None:
    rt = runtime.get()
    try:
        sweeper.sweep(lifecycle=rt.lifecycle, settings=rt.settings)
    except INFRASTRUCTURE_ERRORS as exc:
        # The next sweep, seconds away, tries again; a traceback per beat tick says nothing new.
        logger.warning("sweep skipped: %s: %s", type(exc).__name__, exc)


def _bind(task, job_id: str) -> None:
    request = task.request
    correlation = getattr(request, CORRELATION_HEADER, None) or \
        (getattr(request, "headers", None) or {}).get(CORRELATION_HEADER)
    bind_log_context(job_id=job_id, request_id=correlation, user_id=None)
