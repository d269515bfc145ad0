"""Webhook deliveries driven directly against the real MariaDB (no worker process): what a
transition writes and costs, the sweeper's resume, and giving up after the retry window."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from common.jobs.queue import DELIVER_WEBHOOK
from common.webhooks.deliveries import WebhookDeliveries
from common.webhooks.models import WebhookDelivery
from tests.support.webhook_receiver import WebhookReceiver

LEASE = 30
deliveries = WebhookDelivery.__table__


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def statements() -> float:
    return sum(sample.value for metric in REGISTRY.collect()
               if metric.name == "database_queries"
               for sample in metric.samples if sample.name == "database_queries_total")


def rows(database, job_id: str) -> list[WebhookDelivery]:
    with database.session() as session:
        return list(session.scalars(select(WebhookDelivery)
                                    .where(WebhookDelivery.job_id == job_id)
                                    .order_by(WebhookDelivery.id)))


def claim_and_fail(lifecycle, job_id: str) -> tuple[float, float]:
    """Statements run by the claim and by the ending transition."""
    before = statements()
    claim = lifecycle.claim(job_id, lease_seconds=LEASE)
    claimed = statements()
    assert lifecycle.fail(claim, code="x", message="y")
    return claimed - before, statements() - claimed


def test_a_job_without_a_webhook_pays_nothing_for_the_feature(service_lifecycle, make_job,
                                                              database, broker):
    plain = claim_and_fail(service_lifecycle, make_job())
    hooked = claim_and_fail(service_lifecycle, make_job(
        webhook="https://hooks.example.com/a", webhook_events="completed"))
    started = claim_and_fail(service_lifecycle, make_job(
        webhook="https://hooks.example.com/b", webhook_events="start,completed"))
    # The claim already reads the job's webhook: only a job that has one writes its rows.
    assert hooked == (plain[0], plain[1] + 1)
    assert started == (plain[0] + 1, plain[1] + 1)
    tasks = [m.task for m in broker.drain()]
    assert tasks.count(DELIVER_WEBHOOK) == 3  # one for `hooked`, two for `started`


def test_the_sweeper_publishes_due_rows_without_a_live_message(service_lifecycle, make_job,
                                                               database, broker):
    job_id = make_job(webhook="https://hooks.example.com/c", webhook_events="completed")
    claim_and_fail(service_lifecycle, job_id)
    broker.drain()
    webhooks = service_lifecycle.webhooks
    # Published optimistically by the transition: not again before republish_after.
    assert webhooks.resume_due(grace_seconds=0, republish_after_seconds=60) == 0
    # Taken by a worker that died: the lease ran out and no message is in the broker.
    with database.transaction() as conn:
        conn.execute(update(deliveries).where(deliveries.c.job_id == job_id).values(
            next_attempt_at=dt.datetime(2020, 1, 1), published_at=None))
    assert webhooks.resume_due(grace_seconds=0, republish_after_seconds=60) >= 1
    assert DELIVER_WEBHOOK in [m.task for m in broker.steps_for(job_id)]
    assert webhooks.resume_due(grace_seconds=0, republish_after_seconds=60) == 0


def test_a_failure_past_the_retry_window_gives_up(service_settings, service_lifecycle,
                                                  make_job, database, receiver):
    settings = service_settings.model_copy(update={"webhook_allow_hosts": ["localhost"]})
    webhooks = WebhookDeliveries.of(settings=settings, database=database,
                                    publisher=service_lifecycle.webhooks.publisher)
    job_id = make_job(webhook=receiver.url("/service/down"), webhook_events="completed")
    claim_and_fail(service_lifecycle, job_id)
    receiver.script("/service/down", [500, 500])
    assert webhooks.deliver(job_id) == 1
    [first, second] = rows(database, job_id)
    assert (first.status, first.response_code, second.status, second.attempt) == \
        ("failed", 500, "pending", 2)
    assert second.message_id == first.message_id
    # A day later the receiver still fails: the delivery is given up, nothing more is owed.
    with database.transaction() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == second.id).values(
            event_at=second.event_at - dt.timedelta(days=2),
            next_attempt_at=second.next_attempt_at - dt.timedelta(days=1)))
    assert webhooks.deliver(job_id) == 1
    assert [(r.status, r.attempt) for r in rows(database, job_id)] == \
        [("failed", 1), ("gave_up", 2)]


def test_a_delivery_the_broker_did_not_take_is_left_to_the_sweeper(
        service_settings, service_lifecycle, database, make_job, broker):
    from common.infra.redis_client import redis_from_settings
    from common.jobs.lifecycle import JobLifecycle
    from common.jobs.queue import make_celery

    unreachable = service_settings.model_copy(
        update={"celery_broker_url": "redis://127.0.0.1:1/0"})
    lifecycle = JobLifecycle.of(settings=unreachable, database=database,
                                redis_client=redis_from_settings(service_settings),
                                celery=make_celery(unreachable))
    job_id = make_job(webhook="https://hooks.example.com/d", webhook_events="completed")
    claim_and_fail(lifecycle, job_id)
    [pending] = rows(database, job_id)
    assert pending.status == "pending" and pending.published_at is None
    # The next sweep (with the broker back) publishes it at once, without republish_after.
    assert service_lifecycle.webhooks.resume_due(grace_seconds=0,
                                                 republish_after_seconds=3600) >= 1
    assert DELIVER_WEBHOOK in [m.task for m in broker.steps_for(job_id)]
