"""WSGI entry point: `gunicorn web.wsgi:app`."""

from common.infra.memory import limit_malloc_arenas
from web.app import create_app

limit_malloc_arenas()  # before gunicorn starts this worker's request threads
app = create_app()
