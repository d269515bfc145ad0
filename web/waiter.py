"""Waiting for a job inside a request: a Redis pub/sub wake-up, then a read of the job row.

One listener thread per web process holds a single subscription and wakes whichever requests
wait for the announced job, so a thousand waiting requests cost one Redis connection, not a
thousand. Wake-ups are hints: waiters re-read the row on a short timer too, so a lost message
or a Redis blip only delays an answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import redis

from common.jobs.events import JOB_EVENTS_CHANNEL

logger = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 1.0


class JobWaiter:
    def __init__(self, redis_client: redis.Redis) -> None:
        self._redis = redis_client
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()

    @contextlib.contextmanager
    def listening(self, job_id: str) -> Iterator[threading.Event]:
        """An event set whenever `job_id` is announced, for the duration of the block. Enter
        it before the job can finish (before it is published), so no wake-up is missed."""
        self._ensure_listener()
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(job_id, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiting.get(job_id, [])
                if event in events:
                    events.remove(event)
                if not events:
                    self._waiting.pop(job_id, None)

    def wait_until(self, event: threading.Event, is_finished, timeout: float, *,
                   check_first: bool = True) -> bool:
        """Block until `is_finished()` is true or `timeout` passes; True when it finished.
        `check_first=False` skips the read before the first wait (for a job just published,
        which the wake-up will announce)."""
        deadline = time.monotonic() + timeout
        if not check_first:
            event.wait(min(timeout, FALLBACK_POLL_SECONDS))
            event.clear()
        while True:
            if is_finished():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event.wait(min(remaining, FALLBACK_POLL_SECONDS))
            event.clear()

    def _ensure_listener(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._listen, name="job-waiter", daemon=True)
            self._thread.start()
        # Give the first subscription a moment, so the very first job is rarely missed.
        self._subscribed.wait(0.5)

    def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(JOB_EVENTS_CHANNEL)
                self._subscribed.set()
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message["type"] == "message":
                        self._wake(message["data"])
            except redis.RedisError as exc:
                logger.warning("job waiter lost its subscription: %s; retrying", exc)
                time.sleep(1.0)
            finally:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()

    def _wake(self, job_id: str) -> None:
        with self._lock:
            events = list(self._waiting.get(job_id, ()))
        for event in events:
            event.set()
