"""Is this worker consuming? A liveness file touched from the consumer's event loop.

`celery inspect ping` asks through the broker and costs a Celery start per probe; what a probe
needs to know is local: does the consumer hold a broker connection and does its loop run. The
step below registers a timer entry on the consumer's hub each time the consumer (re)connects,
so the file is touched only while the loop runs on a live connection: Celery cancels the entry
when the connection is lost (and a stuck loop fires no timers). `python -m worker.health` exits
1 when the file is older than WORKER_HEALTH_MAX_AGE_SECONDS (compose and Kubernetes run it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from celery import bootsteps


class ConsumingHeartbeat(bootsteps.StartStopStep):
    """Touch WORKER_HEALTH_FILE every max_age / 6 seconds while the consumer consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        from common.infra.settings import get_settings

        settings = get_settings()
        self.path = settings.worker_health_file
        self.interval = max(0.5, settings.worker_health_max_age_seconds / 6)
        self.entry = None

    def start(self, c) -> None:
        if self.path is None:
            return
        touch(self.path)
        self.entry = c.timer.call_repeatedly(self.interval, touch, (self.path,))

    def stop(self, c) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    shutdown = stop


def touch(path: Path) -> None:
    path.touch()


def check(path: Path | None, max_age: float, now: float | None = None) -> str | None:
    """Why the worker is not healthy, or None when it is."""
    if path is None:
        return "WORKER_HEALTH_FILE is not set"
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: the worker never consumed"
    if age > max_age:
        return f"not consuming for {age:.0f}s (no broker connection or a stuck loop)"
    return None


def main() -> int:
    from common.infra.settings import get_settings

    settings = get_settings()
    problem = check(settings.worker_health_file, settings.worker_health_max_age_seconds)
    if problem:
        sys.stderr.write(f"unhealthy: {problem}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
