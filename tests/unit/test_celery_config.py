"""The loaded Celery configuration keeps the no-loss invariants (reliability.md R13)."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from common.jobs.queue import QUEUES, SWEEP


@pytest.fixture(scope="module")
def celery_app():
    """The worker's app exactly as `celery -A worker.celery_app` loads it."""
    env = {"APP_ENV": "development", "REDIS_URL": "redis://127.0.0.1:6379/15"}
    with mock.patch.dict(os.environ, env):
        from common.infra.settings import get_settings

        get_settings.cache_clear()
        from worker.celery_app import app

        yield app
        get_settings.cache_clear()


def test_messages_are_acked_late_and_requeued_when_the_worker_dies(celery_app):
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result is True


def test_time_limits_and_countdowns_stay_below_the_visibility_timeout(celery_app):
    from common.infra.settings import get_settings
    from worker.tasks import run_chat

    conf = celery_app.conf
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility == conf.visibility_timeout  # the documented "set all of them" rule
    assert conf.task_soft_time_limit < conf.task_time_limit < visibility
    settings = get_settings()
    longest_countdown = max(settings.upstream_retry_max_seconds, run_chat.retry_backoff_max,
                            settings.sweeper_interval_seconds)
    assert longest_countdown < visibility


def test_each_queue_has_its_own_route(celery_app):
    queues = {q.name: q for q in celery_app.conf.task_queues}
    assert set(queues) == set(QUEUES)
    assert len({(q.exchange.name, q.routing_key) for q in queues.values()}) == len(QUEUES)


def test_the_sweeper_is_scheduled(celery_app):
    [entry] = [e for e in celery_app.conf.beat_schedule.values() if e["task"] == SWEEP]
    assert entry["schedule"] > 0


def test_tasks_are_registered_by_their_stable_names(celery_app):
    celery_app.loader.import_default_modules()
    assert {"jobs.run_chat", "jobs.sweep"} <= set(celery_app.tasks)


def test_rabbitmq_gets_quorum_queues_on_topic_exchanges_and_publisher_confirms():
    from common.infra.settings import Settings
    from common.jobs.queue import celery_config

    conf = celery_config(Settings(app_env="development",
                                  celery_broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert "broker_transport" not in conf  # kombu's py-amqp transport
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert conf["broker_native_delayed_delivery_queue_type"] == "quorum"
    for queue in conf["task_queues"]:
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.exchange.type == "topic"  # what native delayed delivery routes by


def test_the_redis_default_keeps_its_transport_and_retries_the_broker_forever():
    from common.infra import broker
    from common.infra.settings import Settings
    from common.jobs.queue import celery_config

    conf = celery_config(Settings(app_env="development",
                                  celery_broker_url="redis://127.0.0.1:6379/1"))
    assert conf["broker_transport"] == broker.TRANSPORT
    assert conf["broker_connection_max_retries"] is None
    assert all(q.queue_arguments is None and q.exchange.type == "direct"
               for q in conf["task_queues"])
