"""One Redis pub/sub subscription per web process, on a thread of its own (a greenlet under
gevent), handing each message to a callback: what the job waiter and the stream hub both
listen with. A lost subscription is retried every second for as long as the process lives;
`on_subscribed` runs after each (re)subscription, for listeners that must catch up on what
was published meanwhile."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class ChannelListener:
    def __init__(self, redis_client: redis.Redis, channel: str, *, name: str,
                 on_message: Callable[[str], None],
                 on_subscribed: Callable[[], None] | None = None) -> None:
        self._redis = redis_client
        self.channel = channel
        self.name = name
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()

    def ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name=self.name,
                                                daemon=True)
                self._thread.start()
        # Give the first subscription a moment, so the very first message is rarely missed.
        self._subscribed.wait(0.5)

    def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self._subscribed.set()
                if self._on_subscribed is not None:
                    self._on_subscribed()
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message["type"] == "message":
                        self._on_message(message["data"])
            except redis.RedisError as exc:
                logger.warning("%s lost its subscription: %s; retrying", self.name, exc)
                time.sleep(RETRY_SECONDS)
            finally:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()
