"""The Celery app both sides share, and publishing of jobs by stable task name.

The web process builds the same app without importing `worker`, and enqueues by name, so the
web image needs no worker code.
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError as BrokerError

from common.infra.settings import Settings
from common.jobs.models import JobKind

logger = logging.getLogger(__name__)

CHAT_QUEUE = "chat"
IMAGE_QUEUE = "images"
MAINTENANCE_QUEUE = "maintenance"
QUEUES = (CHAT_QUEUE, IMAGE_QUEUE, MAINTENANCE_QUEUE)

RUN_CHAT = "jobs.run_chat"
SUBMIT_IMAGE = "jobs.submit_image"
POLL_IMAGE = "jobs.poll_image"
STORE_IMAGES = "jobs.store_images"
CANCEL_IMAGE = "jobs.cancel_image"
SWEEP = "jobs.sweep"
TASK_FOR_KIND = {JobKind.CHAT: (RUN_CHAT, CHAT_QUEUE), JobKind.IMAGE: (SUBMIT_IMAGE, IMAGE_QUEUE)}
IMAGE_TASKS = {"submit": SUBMIT_IMAGE, "poll": POLL_IMAGE, "store": STORE_IMAGES}
# Not "correlation_id": Celery uses that message property for the task id.
CORRELATION_HEADER = "bailian_correlation_id"


class BrokerUnavailable(Exception):
    """A message could not be published; the caller should be retried."""


def celery_config(settings: Settings) -> dict:
    """Celery settings that lose nothing (reliability.md section 0), derived from `settings`."""
    visibility = settings.broker_visibility_timeout
    transport = {
        "visibility_timeout": visibility,
        # Recover messages of a worker killed outright within seconds of the timeout.
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        "socket_timeout": 10,
        "socket_connect_timeout": 3,
        "health_check_interval": 25,
    }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
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
        # One exchange and routing key per queue: with shared defaults, the Redis transport would
        # deliver a copy of every message to every queue bound with the same key.
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        "task_default_queue": CHAT_QUEUE,
        "task_default_exchange": CHAT_QUEUE,
        "task_default_routing_key": CHAT_QUEUE,
        "task_routes": {
            RUN_CHAT: {"queue": CHAT_QUEUE},
            **{name: {"queue": IMAGE_QUEUE} for name in (*IMAGE_TASKS.values(), CANCEL_IMAGE)},
            SWEEP: {"queue": MAINTENANCE_QUEUE},
        },
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


def publish_job(celery: Celery, *, job_id: str, kind: JobKind,
                correlation_id: str | None = None) -> bool:
    """Send the job's first task; False (logged) when the broker is unreachable.

    The job row is committed before this is called, so a failed publish loses nothing: the
    sweeper publishes it later.
    """
    name, queue = TASK_FOR_KIND[kind]
    try:
        celery.send_task(name, args=[job_id], queue=queue,
                         headers={CORRELATION_HEADER: correlation_id} if correlation_id else None)
    except (BrokerError, ConnectionError, OSError) as exc:
        logger.warning("publish failed job_id=%s kind=%s error=%s", job_id, kind.value, exc)
        return False
    return True


def publish_step(celery: Celery, step) -> bool:
    """Schedule an image job's next step (a `common.images.Step`)."""
    args = [step.job_id, step.polls] if step.action == "poll" else [step.job_id]
    try:
        celery.send_task(IMAGE_TASKS[step.action], args=args, queue=IMAGE_QUEUE,
                         countdown=step.countdown or None)
    except (BrokerError, ConnectionError, OSError) as exc:
        logger.warning("publish failed job_id=%s step=%s error=%s", step.job_id, step.action,
                       exc)
        return False
    return True


def publish_cancel(celery: Celery, job_id: str) -> bool:
    """Ask a worker to cancel a job's upstream task (only a worker talks to DashScope)."""
    try:
        celery.send_task(CANCEL_IMAGE, args=[job_id], queue=IMAGE_QUEUE)
    except (BrokerError, ConnectionError, OSError) as exc:
        logger.warning("publish failed job_id=%s step=cancel error=%s", job_id, exc)
        return False
    return True
