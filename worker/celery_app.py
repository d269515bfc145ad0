"""The Celery app workers run: `celery -A worker.celery_app worker` (and `beat`, `flower`)."""

from __future__ import annotations

from celery.signals import worker_process_init

from common.log import configure_logging
from common.memory import limit_malloc_arenas
from common.queue import make_celery
from common.settings import get_settings
from worker import metrics, runtime

limit_malloc_arenas()  # before the pool starts its threads (prefork children inherit it)
settings = get_settings()
configure_logging(settings.log_level)

app = make_celery(settings)
app.conf.imports = ("worker.tasks",)
metrics.install(app, settings, runtime)


@worker_process_init.connect
def _fresh_resources_after_fork(**_kwargs) -> None:
    # A prefork child must not share the parent's sockets (database pool, Redis, HTTP).
    runtime.reset()
