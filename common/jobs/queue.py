"""The Celery app both sides share, its queues and task names, and the steps a job is owed.

The web process builds the same app without importing `worker` and publishes by task name, so
the web image needs no worker code.
"""

from __future__ import annotations

import dataclasses
import logging

from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError as BrokerError

from common.infra import broker
from common.infra.settings import Settings
from common.jobs.models import JobKind

logger = logging.getLogger(__name__)

CHAT_QUEUE = "chat"
# Streamed chats hold their slot for the whole stream, mostly waiting on upstream: they have a
# queue of their own, consumed by a gevent worker of a thousand slots (README, "Streaming"),
# so they neither starve the other queues' threads nor need a thread each.
STREAM_QUEUE = "streams"
IMAGE_QUEUE = "images"
MAINTENANCE_QUEUE = "maintenance"
QUEUES = (CHAT_QUEUE, STREAM_QUEUE, IMAGE_QUEUE, MAINTENANCE_QUEUE)
# What the threads worker consumes; the streams worker consumes STREAM_QUEUE.
THREAD_QUEUES = (CHAT_QUEUE, IMAGE_QUEUE, MAINTENANCE_QUEUE)

RUN_CHAT = "jobs.run_chat"
STREAM_CHAT = "jobs.stream_chat"
SUBMIT_IMAGE = "jobs.submit_image"
POLL_IMAGE = "jobs.poll_image"
STORE_IMAGES = "jobs.store_images"
CANCEL_IMAGE = "jobs.cancel_image"
SWEEP = "jobs.sweep"
DELIVER_WEBHOOK = "webhooks.deliver"
# Webhook deliveries share the maintenance queue: short tasks (one POST of at most
# WEBHOOK_TIMEOUT_SECONDS each) that every worker deployment already consumes.
QUEUE_OF = {RUN_CHAT: CHAT_QUEUE, STREAM_CHAT: STREAM_QUEUE, SUBMIT_IMAGE: IMAGE_QUEUE,
            POLL_IMAGE: IMAGE_QUEUE, STORE_IMAGES: IMAGE_QUEUE, CANCEL_IMAGE: IMAGE_QUEUE,
            SWEEP: MAINTENANCE_QUEUE, DELIVER_WEBHOOK: MAINTENANCE_QUEUE}
# Every async-task kind starts the same way (common/jobs/tasks.py); the task names keep their
# image-era spelling so messages already queued by an older release still run.
FIRST_TASK = {JobKind.CHAT: RUN_CHAT, JobKind.IMAGE: SUBMIT_IMAGE,
              JobKind.IMAGE_EDIT: SUBMIT_IMAGE, JobKind.VIDEO: SUBMIT_IMAGE}
STREAMED_FIRST_TASK = {JobKind.CHAT: STREAM_CHAT}
# Not "correlation_id": Celery uses that message property for the task id.
CORRELATION_HEADER = "bailian_correlation_id"


@dataclasses.dataclass(frozen=True)
class Step:
    """A message a job is owed: the task to run next, when, and for a poll the poll number the
    message may claim (so a duplicate message never starts a second polling chain)."""

    task: str
    job_id: str
    countdown: float = 0.0
    polls: int | None = None
    correlation_id: str | None = None

    @property
    def args(self) -> list:
        return [self.job_id] if self.polls is None else [self.job_id, self.polls]


def first_step(kind: JobKind, job_id: str, correlation_id: str | None = None, *,
               streamed: bool = False) -> Step:
    """The message that starts (or restarts) a job; `streamed` when its client asked for the
    deltas as they come."""
    task = STREAMED_FIRST_TASK.get(kind, FIRST_TASK[kind]) if streamed else FIRST_TASK[kind]
    return Step(task, job_id, correlation_id=correlation_id)


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_amqp(url: str) -> bool:
    """Whether a broker URL names RabbitMQ (any other scheme is the Redis transport)."""
    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


def task_queues(amqp: bool) -> list[Queue]:
    """One exchange and routing key per queue: with shared defaults, the Redis transport would
    deliver a copy of every message to every queue bound with the same key.

    On RabbitMQ the queues are quorum queues (replicated, durable, and dead-lettered
    at-least-once, so a countdown's delay queue cannot drop a message the way a classic queue's
    at-most-once dead-lettering can), on topic exchanges: Celery's native delayed delivery
    routes a countdown (the Wanx poll) through RabbitMQ's delay queues by topic routing keys, so
    the message waits in the broker, not unacked in a worker, where RabbitMQ's consumer_timeout
    (30 minutes) would close the channel and an ETA held by a crashing worker would wait for
    redelivery."""
    if not amqp:
        return [Queue(name, Exchange(name), routing_key=name) for name in QUEUES]
    return [Queue(name, Exchange(name, type="topic"), routing_key=name,
                  queue_arguments={"x-queue-type": "quorum"}) for name in QUEUES]


def transport_options(settings: Settings, amqp: bool) -> dict:
    if amqp:
        # Publisher confirms: send_task returns once RabbitMQ has the message (a quorum queue
        # confirms after a majority wrote it), so a committed job's publish is never a guess.
        return {"confirm_publish": True}
    return {
        "visibility_timeout": settings.broker_visibility_timeout,
        # Recover messages of a worker killed outright within seconds of the timeout.
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        "socket_timeout": 10,
        "socket_connect_timeout": 3,
        "health_check_interval": 25,
    }


def sized_for_pool(options: dict, *, amqp: bool, concurrency: int | None) -> dict:
    """Transport options for a worker whose pool runs `concurrency` tasks at once.

    kombu's Redis channel pools at most 10 connections and raises MaxConnectionsError past
    them; the late acks of a gevent pool's greenlets (a streams worker of 1,000) can all be
    due at once, and a failed ack means a redelivery after the visibility timeout. RabbitMQ
    acks over the consumer's one channel, so it needs nothing."""
    if amqp or not concurrency:
        return options
    return {**options, "max_connections": max(10, concurrency + 10)}


def celery_config(settings: Settings) -> dict:
    """Celery settings that lose nothing (reliability.md section 0), derived from `settings`."""
    visibility = settings.broker_visibility_timeout
    amqp = is_amqp(settings.broker_url)
    return {
        "broker_url": settings.broker_url,
        **({"broker_transport": broker.TRANSPORT}
           if settings.broker_url.startswith("redis://") else {}),
        "broker_transport_options": transport_options(settings, amqp),
        # Countdowns on RabbitMQ wait in its delay queues (see task_queues).
        "broker_native_delayed_delivery_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        "broker_connection_retry_on_startup": True,
        # Retry forever: after the default 100 attempts Celery would stop the worker, and no
        # broker outage, however long, may end a worker process (it resumes when it returns).
        "broker_connection_max_retries": None,
        "broker_connection_timeout": 3,
        "visibility_timeout": visibility,
        # MySQL is the record of every job; results would only be an unread copy.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        # At-least-once: ack after the task, requeue when the worker dies under it. Tasks are
        # idempotent against the job row (common/jobs/lifecycle.py).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_seconds,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(1, settings.task_time_limit - 15),
        # Publishing gives up fast when the broker is down; the job row stays for the sweeper.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0,
                                      "interval_step": 0.2, "interval_max": 0.5},
        "task_queues": task_queues(amqp),
        "task_default_queue": CHAT_QUEUE,
        "task_default_exchange": CHAT_QUEUE,
        "task_default_routing_key": CHAT_QUEUE,
        "task_routes": {task: {"queue": queue} for task, queue in QUEUE_OF.items()},
        # Task events cost publishes on every task, so workers send them only while someone
        # watches: Flower switches them on (enable_events) as long as it runs.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "sweep-jobs": {
                "task": SWEEP,
                "schedule": settings.sweeper_interval_seconds,
                # A sweep nobody ran in time is superseded by the next one.
                "options": {"queue": MAINTENANCE_QUEUE,
                            "expires": settings.sweeper_interval_seconds},
            },
        },
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("bailian", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class Publisher:
    """Sends steps to the broker. A failed publish is logged and reported, never raised: the
    job row records what the job is owed, and the sweeper publishes it again."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def publish(self, step: Step) -> bool:
        headers = {CORRELATION_HEADER: step.correlation_id} if step.correlation_id else None
        try:
            # argsrepr and add_to_parent: Celery would otherwise saferepr() the arguments and
            # look for a calling task on every publish; a step's arguments are ids.
            self.celery.send_task(step.task, args=step.args, queue=QUEUE_OF[step.task],
                                  countdown=step.countdown or None, headers=headers,
                                  argsrepr=repr(step.args), kwargsrepr="{}",
                                  add_to_parent=False)
        except (BrokerError, ConnectionError, OSError) as exc:
            logger.warning("publish failed job_id=%s task=%s error=%s", step.job_id, step.task,
                           exc)
            return False
        return True
