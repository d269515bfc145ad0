"""DashScope's account-wide limits, shared by every worker through Redis.

- `RateBudget`: at most N grants in any window (the task-query budget, per-model submit
  rates), on the exact sliding window of `common.infra.sliding_window`.
- `InflightTasks`: the upstream tasks running now, per model, as expiring slots, so a model's
  concurrent-task limit is respected and a crashed worker's slot frees itself.

Callers that are refused get the time to wait, and re-arm a task with that countdown: they
wait their turn; they never fail for it.
"""

from __future__ import annotations

import redis

from common.infra.sliding_window import SlidingWindow

_ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expires = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], expires, ARGV[2])
  return 1
end
local limit = tonumber(ARGV[1])
if limit <= 0 or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], expires, ARGV[2])
  return 1
end
return 0
"""

_COUNT_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
for _, key in ipairs(KEYS) do
  total = total + redis.call('ZCOUNT', key, now, '+inf')
end
return total
"""


class RateBudget:
    """At most `limit` grants per `window_seconds` for one key; `acquire()` says how long to
    wait when refused."""

    def __init__(self, client: redis.Redis, key: str, limit: float,
                 window_seconds: float = 1.0) -> None:
        self.key = key
        self.limit = limit
        self.window_seconds = window_seconds
        self._window = SlidingWindow(client)

    def acquire(self) -> float:
        """0 when granted, otherwise the seconds until a grant could succeed."""
        if self.limit <= 0:
            return 0.0
        return self._window.hit(self.key, int(self.limit), self.window_seconds).retry_after


class InflightTasks:
    """Expiring slots for the upstream tasks of each model."""

    KEY = "bailian:wanx:inflight:{}"

    def __init__(self, client: redis.Redis) -> None:
        self._acquire = client.register_script(_ACQUIRE_SLOT)
        self._count = client.register_script(_COUNT_LIVE)
        self._client = client

    def acquire(self, model: str, job_id: str, *, limit: int, ttl_seconds: float) -> bool:
        """Take (or refresh) a slot for `job_id`; False when the model is at its limit."""
        return bool(self._acquire(keys=[self.KEY.format(model)],
                                  args=[limit, job_id, int(ttl_seconds * 1000)]))

    def refresh(self, model: str, job_id: str, ttl_seconds: float) -> None:
        self.acquire(model, job_id, limit=0, ttl_seconds=ttl_seconds)

    def release(self, model: str, job_id: str) -> None:
        self._client.zrem(self.KEY.format(model), job_id)

    def count(self, models) -> int:
        """Live slots across `models`: the tasks that polling must share the budget between."""
        keys = [self.KEY.format(m) for m in models]
        return int(self._count(keys=keys)) if keys else 0
