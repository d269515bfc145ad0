"""Thin tasks: decode arguments, call a service in `common`, decide retry. Nothing else."""

from __future__ import annotations

import logging

import redis
from sqlalchemy.exc import InterfaceError, OperationalError

from common.infra.log import bind_log_context
from common.jobs import chat, sweeper
from common.jobs.queue import (
    CANCEL_IMAGE,
    CORRELATION_HEADER,
    POLL_IMAGE,
    RUN_CHAT,
    STORE_IMAGES,
    SUBMIT_IMAGE,
    SWEEP,
    BrokerUnavailable,
    publish_step,
)
from worker import runtime
from worker.celery_app import app

logger = logging.getLogger(__name__)

# The database or Redis is unreachable: try the same task again later (bounded by max_retries
# and, above all, by the job's own deadline).
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError,
                         redis.TimeoutError, BrokerUnavailable)


@app.task(name=RUN_CHAT, bind=True, max_retries=50, autoretry_for=INFRASTRUCTURE_ERRORS,
          retry_backoff=True, retry_backoff_max=60, retry_jitter=True)
def run_chat(self, job_id: str) -> None:
    bind_log_context(job_id=job_id, request_id=_correlation_id(self.request), user_id=None)
    rt = runtime.get()
    retry_in = chat.run_attempt(database=rt.database, backends=rt.backends,
                                redis_client=rt.redis, settings=rt.settings, job_id=job_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


# Image steps re-arm themselves as new messages (see common/jobs/image.py): none of them sleeps.
IMAGE_TASK_OPTIONS = {"max_retries": 50, "autoretry_for": INFRASTRUCTURE_ERRORS,
                      "retry_backoff": True, "retry_backoff_max": 60, "retry_jitter": True}


@app.task(name=SUBMIT_IMAGE, **IMAGE_TASK_OPTIONS)
def submit_image(job_id: str) -> None:
    bind_log_context(job_id=job_id, request_id=None, user_id=None)
    _then(runtime.get().images.submit(job_id))


@app.task(name=POLL_IMAGE, **IMAGE_TASK_OPTIONS)
def poll_image(job_id: str, polls: int) -> None:
    bind_log_context(job_id=job_id, request_id=None, user_id=None)
    _then(runtime.get().images.poll(job_id, polls))


@app.task(name=STORE_IMAGES, **IMAGE_TASK_OPTIONS)
def store_images(job_id: str) -> None:
    bind_log_context(job_id=job_id, request_id=None, user_id=None)
    _then(runtime.get().images.store_images(job_id))


@app.task(name=CANCEL_IMAGE, **IMAGE_TASK_OPTIONS)
def cancel_image(job_id: str) -> None:
    bind_log_context(job_id=job_id, request_id=None, user_id=None)
    runtime.get().images.cancel_upstream(job_id)


def _then(step) -> None:
    if step is not None and not publish_step(app, step):
        # Broker unreachable: fail this delivery so it is retried; the sweeper also resumes it.
        raise BrokerUnavailable(f"could not schedule {step.action} of job {step.job_id}")


@app.task(name=SWEEP, ignore_result=True)
def sweep() -> None:
    rt = runtime.get()
    try:
        sweeper.sweep(database=rt.database, celery=app, redis_client=rt.redis,
                      settings=rt.settings)
    except INFRASTRUCTURE_ERRORS as exc:
        # The next sweep, seconds away, tries again; a traceback per beat tick says nothing new.
        logger.warning("sweep skipped: %s: %s", type(exc).__name__, exc)


def _correlation_id(request) -> str | None:
    return getattr(request, CORRELATION_HEADER, None) or \
        (getattr(request, "headers", None) or {}).get(CORRELATION_HEADER)
