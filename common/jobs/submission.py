"""Submitting work: commit the job, then publish it (the order that loses nothing)."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.orm import Session

from common.infra.metrics import JOBS_SUBMITTED
from common.infra.settings import Settings
from common.jobs import lifecycle as jobs
from common.jobs.models import Job, JobKind
from common.jobs.queue import publish_job

logger = logging.getLogger(__name__)


def submit_job(*, session: Session, celery: Celery, settings: Settings, user_id: int,
               kind: JobKind, model: str, request: dict, idempotency_key: str | None,
               correlation_id: str | None, job_id: str | None = None) -> tuple[Job, bool]:
    """Create (or replay) a job and publish it. Returns (job, created).

    A broker outage does not fail the submission: the committed job waits for the sweeper.
    """
    deadline = (settings.image_job_deadline_seconds if kind == JobKind.IMAGE
                else settings.job_deadline_seconds)
    job, created = jobs.submit(
        session=session, user_id=user_id, kind=kind, model=model, request=request,
        deadline_seconds=deadline, idempotency_key=idempotency_key,
        path=settings.path_for(kind.value),
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds, correlation_id=correlation_id,
        job_id=job_id)
    if created:
        JOBS_SUBMITTED.labels(kind.value).inc()
        if not publish_job(celery, job_id=job.id, kind=kind, correlation_id=correlation_id):
            jobs.mark_unpublished(session=session, job_id=job.id)
    return job, created
