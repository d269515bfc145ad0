"""What an operator sees of the platform now, in its own words: the broker's queue depths,
jobs by state, Wanx tasks in flight against the task-query budget, and the workers that
answer Celery's inspect. Every part is read live (nothing is stored), and a part whose source
does not answer is reported as unknown (None) rather than failing the whole view."""

from __future__ import annotations

import dataclasses
import logging

import redis
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from common.infra.db import Database
from common.infra.settings import Settings
from common.jobs import queries
from common.jobs.models import JobStatus
from common.jobs.queue import QUEUES
from common.upstream.account_limits import InflightTasks

logger = logging.getLogger(__name__)
INSPECT_TIMEOUT_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Worker:
    name: str
    concurrency: int | None
    tasks_done: int  # since the worker started, every task name together


@dataclasses.dataclass(frozen=True)
class SystemOverview:
    queue_depths: dict[str, int | None]  # None: the broker did not answer
    jobs_by_status: dict[JobStatus, int]
    wanx_in_flight: dict[str, int | None]  # per image model
    task_query_budget: float  # DashScope task queries per second, all workers together
    workers: list[Worker] | None  # None: the broker did not answer the inspect


def system_overview(*, settings: Settings, database: Database, redis_client: redis.Redis,
                    celery: Celery) -> SystemOverview:
    with database.connect() as conn:
        jobs_by_status = queries.status_counts(conn)
    return SystemOverview(queue_depths=queue_depths(celery), jobs_by_status=jobs_by_status,
                          wanx_in_flight=_in_flight(redis_client, settings),
                          task_query_budget=settings.task_query_budget,
                          workers=workers_seen(celery))


def queue_depths(celery: Celery) -> dict[str, int | None]:
    """Messages waiting in each queue (a passive declare: Redis list length or RabbitMQ's
    count; a countdown's delayed message is not counted until it is due)."""
    depths: dict[str, int | None] = dict.fromkeys(QUEUES)
    try:
        with celery.connection_for_read() as conn:
            channel = conn.default_channel
            for name in QUEUES:
                try:
                    depths[name] = int(channel.queue_declare(name, passive=True).message_count)
                except (BrokerError, ConnectionError, OSError) as exc:
                    logger.warning("queue depth of %s unknown: %s", name, exc)
                except Exception as exc:
                    logger.info("queue %s not declared yet: %s", name, exc)
                    depths[name] = 0
                    channel = conn.channel()  # the failed passive declare closed the channel
    except (BrokerError, ConnectionError, OSError) as exc:
        logger.warning("broker unreachable for queue depths: %s", exc)
    return depths


def workers_seen(celery: Celery) -> list[Worker] | None:
    """The workers that answer Celery's inspect within INSPECT_TIMEOUT_SECONDS."""
    try:
        stats = celery.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).stats() or {}
    except (BrokerError, ConnectionError, OSError) as exc:
        logger.warning("broker unreachable for inspect: %s", exc)
        return None
    return [Worker(name=name, concurrency=(info.get("pool") or {}).get("max-concurrency"),
                   tasks_done=sum((info.get("total") or {}).values()))
            for name, info in sorted(stats.items())]


def _in_flight(client: redis.Redis, settings: Settings) -> dict[str, int | None]:
    slots = InflightTasks(client)
    counts: dict[str, int | None] = {}
    for model in settings.image_models:
        try:
            counts[model] = slots.count([model])
        except redis.RedisError as exc:
            logger.warning("in-flight tasks of %s unknown: %s", model, exc)
            counts[model] = None
    return counts
