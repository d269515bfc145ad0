"""One blocking read per web process for every stream its clients watch.

A relayed stream must not hold a Redis connection for its whole life: a thousand open streams
would be a thousand blocked connections per process (past Redis's client limit under a
default file limit). Instead one listener per process blocks in a single `XREAD` over every
watched job's stream and hands what arrives to the watchers of that job; a watcher reads for
itself only to catch up (on arrival, on resume, or after a missed hand-over), with a short
non-blocking read on a pooled connection.

A new watcher wakes the listener through a private control stream, so its job is in the next
`XREAD` at once. The listener is a thread (a greenlet under gevent).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import redis

from common.jobs import streams as job_streams
from common.jobs.streams import Entry, JobStreams

logger = logging.getLogger(__name__)

CONTROL_KEY = "bailian:stream-hub:{}"
LISTEN_BLOCK_MS = 10_000


class Watch:
    """One client's view of one job's stream: where it is, and a hand-over slot."""

    def __init__(self, job_id: str, after: str) -> None:
        self.job_id = job_id
        self.position = after
        self.event = threading.Event()
        self._handed: tuple[str, list[Entry]] | None = None

    def hand(self, since: str, entries: list[Entry]) -> None:
        self._handed = (since, entries)
        self.event.set()

    def take(self) -> list[Entry] | None:
        """What the listener handed over, if it continues exactly from this watch's
        position (None: read for yourself)."""
        handed, self._handed = self._handed, None
        if handed is None or handed[0] != self.position:
            return None
        return handed[1]


class StreamHub:
    def __init__(self, streams: JobStreams, listener: redis.Redis) -> None:
        self.streams = streams
        self._listener_redis = listener  # its socket timeout outlasts LISTEN_BLOCK_MS
        self._lock = threading.Lock()
        self._watches: dict[str, list[Watch]] = {}
        self._positions: dict[str, str] = {}  # job id -> the last entry the listener saw
        self._control = CONTROL_KEY.format(uuid.uuid4().hex)
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, job_id: str, after: str) -> Iterator[Watch]:
        watch = Watch(job_id, after)
        self._ensure_listener()
        with self._lock:
            self._watches.setdefault(job_id, []).append(watch)
            new = job_id not in self._positions
            if new:
                self._positions[job_id] = after
        if new:
            self._wake_listener()
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(job_id, [])
                if watch in watches:
                    watches.remove(watch)
                if not watches:
                    self._watches.pop(job_id, None)
                    self._positions.pop(job_id, None)

    def next_entries(self, watch: Watch, timeout: float) -> list[Entry]:
        """The entries after the watch's position, waiting up to `timeout` seconds for the
        first ([] when none came). Raises redis.RedisError when Redis cannot be read."""
        deadline = time.monotonic() + timeout
        while True:
            watch.event.clear()  # first: a hand-over landing meanwhile sets it again
            entries = watch.take()
            if entries is None:
                entries = self.streams.read(watch.job_id, watch.position)
            if entries:
                watch.position = entries[-1].id
                return entries
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not watch.event.wait(remaining):
                return []

    # --- the listener -------------------------------------------------------------------------

    def _wake_listener(self) -> None:
        try:
            self.streams.redis.xadd(self._control, {"w": "1"}, maxlen=1)
            self.streams.redis.expire(self._control, 3600)
        except redis.RedisError as exc:
            logger.warning("stream hub not woken: %s", exc)  # watchers time out and read

    def _ensure_listener(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="stream-hub",
                                                daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        control_position = job_streams.START
        while True:
            with self._lock:
                keys = {job_streams.KEY.format(job_id): position
                        for job_id, position in self._positions.items()}
            keys[self._control] = control_position
            try:
                answer = self._listener_redis.xread(keys, count=500, block=LISTEN_BLOCK_MS)
            except redis.RedisError as exc:
                logger.warning("stream hub lost Redis: %s; retrying", exc)
                time.sleep(1.0)
                continue
            for key, raw in answer or ():
                if key == self._control:
                    control_position = raw[-1][0]
                    continue
                job_id = key.split(":")[2]
                self._hand(job_id, keys[key], [job_streams.entry(i, f) for i, f in raw])

    def _hand(self, job_id: str, since: str, entries: list[Entry]) -> None:
        with self._lock:
            if job_id in self._positions:
                self._positions[job_id] = entries[-1].id
            watches = list(self._watches.get(job_id, ()))
        for watch in watches:
            watch.hand(since, entries)
