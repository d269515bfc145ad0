"""Celery workers: thin tasks over the services in `common`."""
