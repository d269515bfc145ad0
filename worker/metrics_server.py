"""Each worker serves its metrics on its own port (WORKER_METRICS_PORT, on
WORKER_METRICS_ADDRESS), correct for its pool; a port it cannot bind stops it at start.

- threads (the platform's pool): one process; its registry is served as it is.
- prefork: children count in their own processes, so PROMETHEUS_MULTIPROC_DIR must be set
  (and wiped) by the start script; the main process serves the sum of every child's files.
  Starting prefork without it would silently under-count, so the worker refuses to.
  (The registry a scrape reads is built by common/infra/prometheus.py, as for the web tier.)

AI and token metrics are counted where the upstream call happens (common/upstream); this endpoint
adds what is computed at scrape time: queue depth per Celery queue, Wanx tasks in flight, and
jobs past their deadline.
"""

from __future__ import annotations

import contextlib
import logging

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown
from kombu.exceptions import ChannelError
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from common.infra import prometheus
from common.infra.metrics import configure_labels
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.jobs.models import ACTIVE_STATUSES, Job
from common.jobs.queue import QUEUES
from common.upstream.account_limits import InflightTasks

logger = logging.getLogger(__name__)


def install(app: Celery, settings: Settings, runtime) -> None:
    """Connect the worker's metrics to its lifecycle signals."""
    configure_labels([*settings.chat_models, *settings.task_models,
                      *settings.embedding_models])

    @worker_init.connect(weak=False)
    def _require_multiprocess_for_prefork(sender=None, **_kwargs):
        pool = getattr(getattr(sender, "pool_cls", None), "__module__", "") or ""
        if settings.metrics_enabled and "prefork" in pool and \
                not prometheus.multiprocess():
            _refuse_to_start("the prefork pool needs PROMETHEUS_MULTIPROC_DIR (an empty "
                             "directory) for correct metrics; set it, or use -P threads")

    @worker_init.connect(weak=False)
    def _serve(**_kwargs):
        # Bound at worker_init, before the worker consumes anything, so a port another process
        # holds (two workers on one host with the same WORKER_METRICS_PORT) stops this worker
        # at start, naming the setting, instead of leaving it running without metrics.
        if not settings.metrics_enabled or not settings.worker_metrics_port:
            return
        registry = prometheus.scrape_registry([WorkerStateCollector(app, runtime)])
        address, port = settings.worker_metrics_address, settings.worker_metrics_port
        try:
            start_http_server(port, addr=address, registry=registry)
        except OSError as exc:
            message = (f"WORKER_METRICS_PORT {port} on WORKER_METRICS_ADDRESS {address} cannot "
                       f"be served ({exc.strerror or exc}); give each worker on this host its "
                       "own WORKER_METRICS_PORT (0 serves no metrics)")
            _refuse_to_start(message)
        logger.info("worker metrics on %s:%s", address, port)

    @worker_process_shutdown.connect(weak=False)
    def _retire(**_kwargs):
        prometheus.retire_process()


def _refuse_to_start(message: str) -> None:
    """Stop the worker at worker_init, before it consumes anything (exit status 1)."""
    logger.critical(message)
    # SystemExit, not an exception: Celery's signal dispatch logs and swallows exceptions, so
    # a RuntimeError here used to leave the worker running.
    raise SystemExit(message)


class WorkerStateCollector:
    """Values read at scrape time from the broker, Redis and MySQL."""

    def __init__(self, app: Celery, runtime) -> None:
        self.app = app
        self.runtime = runtime

    def collect(self):
        yield from self._queue_depth()
        rt = self.runtime.get()
        try:
            in_flight = InflightTasks(rt.redis).count(rt.settings.task_models)
            yield GaugeMetricFamily("wanx_tasks_in_flight", "Wan tasks (images, edits, videos) "
                                    "DashScope is working on",
                                    value=in_flight)
        except Exception as exc:  # a scrape must not fail because one source is down
            logger.warning("wanx_tasks_in_flight unavailable: %s", exc)
        try:
            with rt.database.session() as session:
                overdue = session.scalar(select(func.count()).select_from(Job).where(
                    Job.status.in_(ACTIVE_STATUSES), Job.deadline_at < utcnow()))
            yield GaugeMetricFamily("jobs_past_deadline", "Unfinished jobs past their "
                                    "deadline (the sweeper fails them; > 0 for long = stuck)",
                                    value=overdue)
        except Exception as exc:
            logger.warning("jobs_past_deadline unavailable: %s", exc)

    def _queue_depth(self):
        family = GaugeMetricFamily("celery_queue_length", "Messages waiting in a Celery queue",
                                   labels=["queue"])
        try:
            with self.app.connection_for_read() as connection:
                for queue in QUEUES:
                    family.add_metric([queue], _message_count(connection, queue))
        except Exception as exc:
            logger.warning("celery_queue_length unavailable: %s", exc)
            return
        yield family


def _message_count(connection, queue: str) -> int:
    """Messages waiting, through kombu so Redis and RabbitMQ brokers both work."""
    channel = connection.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # Redis drops an empty queue's key; a passive declare then finds nothing
    finally:
        with contextlib.suppress(Exception):
            channel.close()
