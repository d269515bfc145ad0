"""An exact sliding-window counter on Redis: at most N hits in any window, shared by every
process and host.

A sorted set of hit times, trimmed, counted and appended in one Lua script on Redis's own
clock, so callers on different hosts agree without synchronised clocks. The limit is an
argument, not part of the key: when a user's tier changes, the hits already made in the window
still count against the new limit.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import uuid

import redis

_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local granted = 0
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  used = used + 1
  granted = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local frees_at = now + window
if oldest[2] then frees_at = tonumber(oldest[2]) + window end
return {granted, used, now, frees_at}
"""


@dataclasses.dataclass(frozen=True)
class Decision:
    granted: bool
    limit: int
    used: int
    now: float  # Redis's clock, epoch seconds
    frees_at: float  # when the oldest hit in the window expires, epoch seconds

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def retry_after(self) -> float:
        """Seconds until a refused hit could be granted."""
        return 0.0 if self.granted else max(0.001, self.frees_at - self.now)

    @property
    def reset_seconds(self) -> float:
        """Seconds until the oldest entry leaves the window."""
        return max(0.0, self.frees_at - self.now)


class SlidingWindow:
    """At most `limit` hits in any `window_seconds` for each key."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_HIT)

    def hit(self, key: str, limit: int, window_seconds: float) -> Decision:
        granted, used, now, frees_at = self._script(
            keys=[key], args=[int(limit), int(window_seconds * 1000), uuid.uuid4().hex])
        return Decision(bool(granted), int(limit), int(used), now / 1000, frees_at / 1000)


class LocalSlidingWindow:
    """The same window, kept in this process only: the degraded mode while Redis is down."""

    def __init__(self) -> None:
        self._hits: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: float) -> Decision:
        now = time.time()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - window_seconds:
                hits.popleft()
            granted = len(hits) < limit
            if granted:
                hits.append(now)
            frees_at = (hits[0] if hits else now) + window_seconds
            return Decision(granted, limit, len(hits), now, frees_at)
