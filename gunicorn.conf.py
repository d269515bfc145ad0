"""gunicorn settings, read automatically by `gunicorn web.wsgi:app` started from the repo root.

gevent, not threads: a synchronous chat request waits for its job (up to SYNC_WAIT_SECONDS)
and a streamed one stays open for its job's whole life, so one process must hold a thousand
waiting requests, not 16 (README, "Serving model"; measured by `python -m bench serving_model`).
gunicorn's gevent worker monkey-patches the standard library when the worker process starts,
before it imports the application (preload_app stays off for that reason), so redis-py,
PyMySQL, SQLAlchemy's pool, Celery's producer and web/waiter.py's listener all yield instead
of blocking; CPU-bound C calls (Argon2) go to gevent's thread pool (common/infra/cooperative.py).
WEB_WORKER_CLASS=gthread brings the thread model back (WEB_THREADS per process), to compare.

Metrics: every worker process writes its samples to PROMETHEUS_MULTIPROC_DIR, so /metrics sums
them whichever worker answers. The directory is set here, in the master, before any worker
imports prometheus_client; wiped at start; and each dead worker's files are retired.
"""

import contextlib
import os
import shutil
import tempfile

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
# gevent: concurrent connections (hence requests) per process; beyond it, new ones wait in the
# listen backlog. gthread: the threads per process, and connections held per process.
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
threads = int(os.environ.get("WEB_THREADS", "16"))
# The app must be imported in each worker after gevent has patched it, never in the master.
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (with jitter, so they never all restart at once).
max_requests = 10000
max_requests_jitter = 1000
# Our own JSON access lines carry the request id; gunicorn's would duplicate them.
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                            "fmt": "%(levelname)s %(name)s %(message)s",
                            "rename_fields": {"levelname": "level", "name": "logger"},
                            "timestamp": True}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "stream": "ext://sys.stderr"}},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console"],
                                   "propagate": False}},
}

METRICS = os.environ.get("METRICS_ENABLED", "true").lower() not in ("0", "false", "no")
if METRICS:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                          os.path.join(tempfile.gettempdir(), f"bailian-web-metrics-{os.getpid()}"))


def on_starting(server):
    if METRICS:
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        os.makedirs(directory, exist_ok=True)
        _wipe(directory)  # samples of a previous run must go


def post_worker_init(worker):
    # The app is loaded: freeze it and collect the older generations on a timer, so a burst of
    # opening streams does not bring full collections that stall every open stream of the
    # process (common/infra/gc_tuning.py).
    from common.infra.gc_tuning import tune_for_server
    from common.infra.settings import get_settings

    tune_for_server(get_settings().gc_full_collection_seconds)


def child_exit(server, worker):
    if METRICS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if METRICS:
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        _wipe(directory)
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # unless the parent's files are still in it


def _wipe(directory: str) -> None:
    """Remove every sample file but the parent's: scripts/run's supervisor counts its restarts
    (of this gunicorn too) in files named after its pid, in this directory."""
    parents = f"_{os.getppid()}.db"
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif not name.endswith(parents):
            os.remove(path)
