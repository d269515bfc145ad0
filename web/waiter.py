"""Waiting for a job inside a request: a Redis pub/sub wake-up, and the job it carries.

One listener thread per web process holds a single subscription and wakes whichever requests
wait for the announced job, so a thousand waiting requests cost one Redis connection, not a
thousand. A wake-up that carries the job (common/jobs/events.py) is answered from memory; one
that does not, a lost message or a Redis blip only means a read of the row, which waiters also
make on a short timer.

Under the gevent web worker (gunicorn.conf.py) the standard library is patched before this
module is imported: the listener "thread" is a greenlet, the locks and events are gevent's, and
the pub/sub read yields to the hub, so the same code holds a thousand waiters per process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import redis

from common.jobs import events
from common.jobs.views import JobView
from web.channel_listener import ChannelListener

logger = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 1.0


class Waiting:
    """One request waiting for one job: set when the job is announced, with the job as the
    announcement carried it (if it did)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.event = threading.Event()
        self._announced: str | None = None

    def wake(self, view_json: str | None) -> None:
        self._announced = view_json
        self.event.set()

    def take(self) -> JobView | None:
        """The job as last announced, once (None when the announcement carried no job)."""
        self.event.clear()  # first: a wake-up that lands meanwhile sets it again
        raw, self._announced = self._announced, None
        return None if raw is None else events.parse_view(raw)


class JobWaiter:
    def __init__(self, redis_client: redis.Redis) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Waiting]] = {}
        self._listener = ChannelListener(redis_client, events.JOB_EVENTS_CHANNEL,
                                         name="job-waiter", on_message=self._wake)

    @contextlib.contextmanager
    def listening(self, job_id: str) -> Iterator[Waiting]:
        """Be woken whenever `job_id` is announced, for the duration of the block. Enter it
        before the job can finish (before it is published), so no wake-up is missed."""
        self._listener.ensure_started()
        waiting = Waiting(job_id)
        with self._lock:
            self._waiting.setdefault(job_id, []).append(waiting)
        try:
            yield waiting
        finally:
            with self._lock:
                waiters = self._waiting.get(job_id, [])
                if waiting in waiters:
                    waiters.remove(waiting)
                if not waiters:
                    self._waiting.pop(job_id, None)

    def wait(self, waiting: Waiting, read: Callable[[], JobView], timeout: float, *,
             check_first: bool = True) -> JobView | None:
        """The job once it is settled, or the latest known state when `timeout` passes (None
        if it was never read). `read` reads the row; `check_first=False` skips the read
        before the first wait (for a job just published, which the wake-up will announce)."""
        deadline = time.monotonic() + timeout
        latest = read() if check_first else None
        while latest is None or not latest.settled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            woken = waiting.event.wait(min(remaining, FALLBACK_POLL_SECONDS))
            announced = waiting.take() if woken else None
            latest = announced or read()
        return latest

    def _wake(self, message: str) -> None:
        job_id, view_json = events.split(message)
        with self._lock:
            waiters = list(self._waiting.get(job_id, ()))
        for waiting in waiters:
            waiting.wake(view_json)
