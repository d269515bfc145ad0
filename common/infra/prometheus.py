"""The registry a scrape reads: every process's files in multiprocess mode
(PROMETHEUS_MULTIPROC_DIR), else this process's default registry, plus scrape-time collectors.

Written once for both scrape endpoints: the web tier's /metrics (gunicorn workers) and each
Celery worker's metrics port (a threads pool, or prefork children). Whoever starts the processes
sets and wipes the directory (gunicorn.conf.py, the worker's start script); a process that ends
retires its files with `retire_process`.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    """Whether samples are written to files shared by several processes."""
    return MULTIPROC_DIR in os.environ


def scrape_registry(collectors=()) -> CollectorRegistry:
    """A registry for one exposition: the counted samples, then each collector's values."""
    registry = CollectorRegistry()
    if multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(_Delegate(REGISTRY))
    for collector in collectors:
        registry.register(collector)
    return registry


def retire_process(pid: int | None = None) -> None:
    """Mark a finished process's live-gauge files dead (multiprocess mode only)."""
    if multiprocess():
        mark_process_dead(os.getpid() if pid is None else pid)


class _Delegate:
    """Expose another registry's samples through this one (single-process mode)."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()
