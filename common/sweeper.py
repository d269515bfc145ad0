"""The periodic safety net behind at-least-once delivery (run by Celery beat).

It fails jobs past their deadline and publishes jobs whose message never left, was lost, or
whose worker died. Running it twice at once only publishes a duplicate, which the claim drops.
"""

from __future__ import annotations

import dataclasses
import logging

import redis
from celery import Celery

from common import jobs
from common.db import Database
from common.events import announce_job_finished
from common.queue import publish_job
from common.settings import Settings

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepReport:
    expired: int
    published: int
    unpublished: int


def sweep(*, database: Database, celery: Celery, redis_client: redis.Redis,
          settings: Settings) -> SweepReport:
    with database.session() as session:
        expired = jobs.expire_overdue(session=session)
    for job_id in expired:
        announce_job_finished(redis_client, job_id)
    with database.session() as session:
        due = jobs.due_for_publish(session=session, grace_seconds=settings.sweeper_grace_seconds,
                                   republish_after_seconds=settings.republish_queued_after_seconds)
    published = [job_id for job_id, kind in due if publish_job(celery, job_id=job_id, kind=kind)]
    with database.session() as session:
        jobs.mark_enqueued(session=session, job_ids=published)
    report = SweepReport(expired=len(expired), published=len(published),
                         unpublished=len(due) - len(published))
    if expired or due:
        logger.info("sweep expired=%s published=%s unpublished=%s", report.expired,
                    report.published, report.unpublished)
    return report
