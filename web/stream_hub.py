"""One subscription per web process delivers every stream its clients watch.

A relayed stream must not hold a Redis connection for its whole life (a thousand open streams
would be a thousand blocked connections per process, past Redis's client limit under a default
file limit), nor cost Redis work per watched stream on every delta. Every entry the worker
writes is also published on one channel, with the id of the entry it follows
(common/jobs/streams.py); one listener per process hands each message to the watchers of its
job, and a watcher relays it as it is when it continues exactly where the watcher is. So
nothing touches Redis per delta; a watcher reads the stream itself only to catch up: on
arrival (or resume), after a resubscription, after a message it missed (pub/sub is at most
once: the next one does not continue from its position), and when a keep-alive passes without
news (the missed message may have been the last).

The listener is a thread (a greenlet under gevent), like the job waiter's.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import redis

from common.jobs import streams as job_streams
from common.jobs.streams import Entry, JobStreams
from web.channel_listener import ChannelListener

logger = logging.getLogger(__name__)


class Watch:
    """One client's view of one job's stream: the last entry it has, and the entries the
    listener handed it since (each with the id of the entry it follows)."""

    def __init__(self, job_id: str, after: str) -> None:
        self.job_id = job_id
        self.position = after
        self.event = threading.Event()
        self._handed: collections.deque[tuple[str, Entry]] = collections.deque()
        # Hand-overs alone are not enough: on arrival, what was published before the watch
        # existed is only in the stream; after a resubscription, what was published meanwhile.
        self.stale = True

    def hand(self, previous: str, entry: Entry) -> None:
        self._handed.append((previous, entry))
        self.event.set()

    def catch_up(self) -> None:
        self.stale = True
        self.event.set()

    def take(self) -> list[Entry] | None:
        """The handed entries, if they continue exactly from the watch's position ([]: none
        came); None when the stream must be read instead (one is missing, or the watch is
        stale)."""
        if self.stale:
            self.stale = False
            return None
        entries, position = [], self.position
        while self._handed:
            previous, entry = self._handed.popleft()
            if _order(entry.id) <= _order(position) and previous != position:
                continue  # an entry already read (a catch-up overtook the listener)
            if previous != position:
                self._handed.clear()
                return None
            entries.append(entry)
            position = entry.id
        self.position = position
        return entries


def _order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class StreamHub:
    def __init__(self, streams: JobStreams, listener: redis.Redis) -> None:
        self.streams = streams
        self._lock = threading.Lock()
        self._watches: dict[str, list[Watch]] = {}
        # After each (re)subscription every watcher reads for itself: what was published
        # meanwhile is in the streams.
        self._listener = ChannelListener(listener, job_streams.CHANNEL, name="stream-hub",
                                         on_message=self._hand, on_subscribed=self._wake_all)

    @contextlib.contextmanager
    def watching(self, job_id: str, after: str) -> Iterator[Watch]:
        watch = Watch(job_id, after)
        self._listener.ensure_started()
        with self._lock:
            self._watches.setdefault(job_id, []).append(watch)
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(job_id, [])
                if watch in watches:
                    watches.remove(watch)
                if not watches:
                    self._watches.pop(job_id, None)

    def next_entries(self, watch: Watch, timeout: float) -> list[Entry]:
        """The entries after the watch's position, waiting up to `timeout` seconds for the
        first ([] when none came). Raises redis.RedisError when Redis cannot be read."""
        deadline = time.monotonic() + timeout
        while True:
            watch.event.clear()  # first: a hand-over landing meanwhile sets it again
            entries = watch.take()
            if entries is None:
                entries = self._read(watch)
            if entries:
                return entries
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not watch.event.wait(remaining):
                return self._read(watch)  # no news: the message missed may have been the last

    def _read(self, watch: Watch) -> list[Entry]:
        entries = self.streams.read(watch.job_id, watch.position)
        if entries:
            watch.position = entries[-1].id
        return entries

    # --- the listener -------------------------------------------------------------------------

    def _hand(self, message: str) -> None:
        job_id = job_streams.job_of(message)
        with self._lock:
            watches = list(self._watches.get(job_id, ()))
        if not watches:
            return  # another process's client (every process hears every stream)
        parsed = job_streams.published(message)
        if parsed is None:
            return
        _, previous, entry = parsed
        for watch in watches:
            watch.hand(previous, entry)

    def _wake_all(self) -> None:
        with self._lock:
            watches = [w for ws in self._watches.values() for w in ws]
        for watch in watches:
            watch.catch_up()
