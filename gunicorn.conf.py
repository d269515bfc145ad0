"""gunicorn settings, read automatically by `gunicorn web.wsgi:app` started from the repo root.

Threads, not sync workers: a synchronous chat request waits for its job (up to
SYNC_WAIT_SECONDS), and a waiting thread must not take a whole process with it.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (with jitter, so they never all restart at once).
max_requests = 10000
max_requests_jitter = 1000
