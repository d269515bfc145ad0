"""The periodic safety net behind at-least-once delivery (run by Celery beat).

It fails jobs past their deadline and publishes jobs whose message never left, was lost, or
whose worker died. Running it twice at once only publishes a duplicate, which the claim drops.
"""

from __future__ import annotations

import dataclasses
import logging

import redis
from celery import Celery

from common.infra.db import Database
from common.infra.metrics import SWEEPER_ACTIONS
from common.infra.settings import Settings
from common.jobs import lifecycle as jobs
from common.jobs.events import announce_job_finished
from common.jobs.image import POLL, STORE, Step
from common.jobs.models import JobKind
from common.jobs.queue import publish_cancel, publish_job, publish_step

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepReport:
    expired: int
    published: int
    unpublished: int
    resumed: int = 0


def sweep(*, database: Database, celery: Celery, redis_client: redis.Redis,
          settings: Settings) -> SweepReport:
    with database.session() as session:
        expired = jobs.expire_overdue(session=session)
    for job in expired:
        announce_job_finished(redis_client, job.id)
        if job.kind == JobKind.IMAGE and job.upstream_running:
            publish_cancel(celery, job.id)  # polling goes on, to record what DashScope bills
    with database.session() as session:
        due = jobs.due_for_publish(session=session, grace_seconds=settings.sweeper_grace_seconds,
                                   republish_after_seconds=settings.republish_queued_after_seconds)
    published = [job_id for job_id, kind in due if publish_job(celery, job_id=job_id, kind=kind)]
    with database.session() as session:
        jobs.mark_enqueued(session=session, job_ids=published)
    resumed = _resume_owed_actions(database, celery, settings)
    for action, count in (("expired", len(expired)), ("published", len(published)),
                          ("resumed", resumed)):
        if count:
            SWEEPER_ACTIONS.labels(action).inc(count)
    report = SweepReport(expired=len(expired), published=len(published),
                         unpublished=len(due) - len(published), resumed=resumed)
    if expired or due or resumed:
        logger.info("sweep expired=%s published=%s unpublished=%s resumed=%s", report.expired,
                    report.published, report.unpublished, report.resumed)
    return report


def _resume_owed_actions(database: Database, celery: Celery, settings: Settings) -> int:
    """Re-publish polls and image copies whose messages were lost (e.g. a killed worker)."""
    with database.session() as session:
        owed = jobs.overdue_actions(session=session, grace_seconds=settings.sweeper_grace_seconds,
                                    retry_after_seconds=settings.republish_queued_after_seconds)
    resumed = 0
    for action in owed:
        step = (Step(POLL, action.id, polls=action.polls) if action.needs_poll
                else Step(STORE, action.id) if action.needs_store else None)
        if step is None:
            with database.session() as session:
                jobs.schedule_action(session=session, job_id=action.id, due=None)
        elif publish_step(celery, step):
            resumed += 1
    return resumed
