"""The periodic safety net behind at-least-once delivery (run by Celery beat): it ends jobs
past their deadline and sends again what the outbox says was never delivered."""

from __future__ import annotations

import dataclasses
import logging

from common.infra.metrics import SWEEPER_ACTIONS
from common.infra.settings import Settings
from common.jobs import outbox
from common.jobs.lifecycle import JobLifecycle

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepReport:
    expired: int
    published: int
    unpublished: int
    resumed: int = 0
    webhooks: int = 0
    released: int = 0  # budget charges of ended jobs closed here (common.billing.budgets)


def sweep(*, lifecycle: JobLifecycle, settings: Settings) -> SweepReport:
    database, effects = lifecycle.database, lifecycle.effects
    expired = lifecycle.expire_overdue()
    published, unpublished = outbox.republish_unsent(
        database=database, effects=effects, grace_seconds=settings.sweeper_grace_seconds,
        republish_after_seconds=settings.republish_queued_after_seconds)
    resumed = outbox.resume_owed_actions(
        database=database, effects=effects, grace_seconds=settings.sweeper_grace_seconds,
        retry_after_seconds=settings.republish_queued_after_seconds)
    webhooks = lifecycle.webhooks.resume_due(
        grace_seconds=settings.sweeper_grace_seconds,
        republish_after_seconds=settings.republish_queued_after_seconds) \
        if lifecycle.webhooks else 0
    released = 0
    if lifecycle.budgets is not None:
        with database.transaction() as conn:
            released = lifecycle.budgets.release_ended(conn)
    report = SweepReport(expired=expired, published=published, unpublished=unpublished,
                         resumed=resumed, webhooks=webhooks, released=released)
    for action in ("expired", "published", "resumed", "webhooks", "released"):
        if count := getattr(report, action):
            SWEEPER_ACTIONS.labels(action).inc(count)
    if expired or published or unpublished or resumed or webhooks or released:
        logger.info("sweep expired=%s published=%s unpublished=%s resumed=%s webhooks=%s "
                    "released=%s", expired, published, unpublished, resumed, webhooks, released)
    return report
