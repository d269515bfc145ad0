"""The Celery app workers run: `celery -A worker.celery_app worker` (and `beat`, `flower`)."""

from __future__ import annotations

from celery.signals import worker_init, worker_process_init

from common.infra.gc_tuning import tune_for_server
from common.infra.log import configure_logging
from common.infra.memory import limit_malloc_arenas
from common.infra.settings import get_settings
from common.jobs.queue import is_amqp, make_celery, sized_for_pool
from worker import health, metrics_server, runtime

limit_malloc_arenas()  # before the pool starts its threads (prefork children inherit it)
settings = get_settings()
configure_logging(settings.log_level)

app = make_celery(settings)
app.conf.imports = ("worker.tasks",)
metrics_server.install(app, settings, runtime)
app.steps["consumer"].add(health.ConsumingHeartbeat)


@worker_init.connect
def _size_for_concurrency(sender=None, **_kwargs) -> None:
    # Each thread of the pool may hold an upstream connection (a streaming job, for its whole
    # stream): the keep-alive pool is sized to match, so none is opened and discarded per call.
    concurrency = getattr(sender, "concurrency", None)
    runtime.configure(concurrency=concurrency)
    # Read when the consumer connects, after this signal.
    app.conf.broker_transport_options = sized_for_pool(
        app.conf.broker_transport_options, amqp=is_amqp(settings.broker_url),
        concurrency=concurrency)
    # Everything is imported by now (common/infra/gc_tuning.py).
    tune_for_server(settings.gc_full_collection_seconds)


@worker_process_init.connect
def _fresh_resources_after_fork(**_kwargs) -> None:
    # A prefork child must not share the parent's sockets (database pool, Redis, HTTP).
    runtime.reset()
