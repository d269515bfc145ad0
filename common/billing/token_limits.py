"""Tokens-per-minute limits, exact across processes: a weighted sliding window on Redis.

A request is admitted when the tokens already used in the last window plus the tokens it may
use (its prompt bound plus max_tokens, common.billing.budgets.Estimate) fit under every limit
that applies to it (its user's tier, its API key's own); admitting it records its tokens in
all of them in the same Lua script, on Redis's clock. When its job ends, the entry is
corrected to the tokens the usage row reports (0 for a job that ended without usage), so the
window holds what was really used. Each window is a sorted set of job ids by time and a hash
of their tokens with a running sum; the limit is an argument, not part of the key.
"""

from __future__ import annotations

import logging

import redis

from common.infra.sliding_window import Decision

logger = logging.getLogger(__name__)

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local member = ARGV[2]
local cost = tonumber(ARGV[3])
local n = #KEYS / 2
local used, oldest = {}, {}
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now - window)
  local sum = tonumber(redis.call('HGET', h, '__sum') or '0')
  if #gone > 0 then
    local values = redis.call('HMGET', h, unpack(gone))
    for _, v in ipairs(values) do if v then sum = sum - tonumber(v) end end
    redis.call('HDEL', h, unpack(gone))
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
  end
  if redis.call('ZCARD', z) == 0 or sum < 0 then sum = 0 end
  redis.call('HSET', h, '__sum', sum)
  used[i] = sum
end
local granted = 1
for i = 1, n do
  if used[i] + cost > tonumber(ARGV[3 + i]) then granted = 0 end
end
local out = {granted, now}
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  if granted == 1 then
    redis.call('ZADD', z, now, member)
    redis.call('HSET', h, member, cost)
    redis.call('HINCRBY', h, '__sum', cost)
    used[i] = used[i] + cost
  end
  redis.call('PEXPIRE', z, window)
  redis.call('PEXPIRE', h, window)
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  local frees = now + window
  if first[2] then frees = tonumber(first[2]) + window end
  table.insert(out, used[i])
  table.insert(out, frees)
end
return out
"""

_CORRECT = """
for i = 1, #KEYS / 2 do
  local h = KEYS[2 * i]
  local old = redis.call('HGET', h, ARGV[1])
  if old then
    redis.call('HSET', h, ARGV[1], ARGV[2])
    redis.call('HINCRBY', h, '__sum', tonumber(ARGV[2]) - tonumber(old))
  end
end
return 1
"""


# The same decision as the request limits' (the tokens are its `used` and `limit`).
TokenDecision = Decision


def windows(user_id: int, api_key_id: int | None) -> list[str]:
    names = [f"tpm:user:{user_id}"]
    if api_key_id is not None:
        names.append(f"tpm:key:{api_key_id}")
    return names


def _keys(names: list[str]) -> list[str]:
    return [part for name in names for part in (f"{name}:z", f"{name}:h")]


class TokenLimits:
    def __init__(self, client: redis.Redis, window_seconds: float) -> None:
        self.window_ms = int(window_seconds * 1000)
        self._admit = client.register_script(_ADMIT)
        self._correct = client.register_script(_CORRECT)

    def admit(self, *, job_id: str, tokens: int, limits: list[tuple[str, int]]
              ) -> TokenDecision:
        """Admit `tokens` against every (window, limit), or none; the tightest window's view."""
        names = [name for name, _ in limits]
        out = self._admit(keys=_keys(names), args=[self.window_ms, job_id, int(tokens),
                                                   *[int(limit) for _, limit in limits]])
        granted, now = bool(out[0]), out[1] / 1000
        decisions = [TokenDecision(granted, int(limit), int(out[2 + 2 * i]), now,
                                   out[3 + 2 * i] / 1000)
                     for i, (_, limit) in enumerate(limits)]
        if not granted:
            refused = [d for d in decisions if d.used + tokens > d.limit]
            return max(refused, key=lambda d: d.frees_at) if refused else decisions[0]
        return min(decisions, key=lambda d: d.remaining)

    def correct(self, *, job_id: str, user_id: int, api_key_id: int | None,
                tokens: int) -> None:
        """The job used `tokens` (its entry still in a window, if any, takes that value)."""
        self._correct(keys=_keys(windows(user_id, api_key_id)), args=[job_id, int(tokens)])


def reset_text(seconds: float) -> str:
    """A duration as OpenAI writes x-ratelimit-reset-tokens: 1m30s, 6s, 250ms."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3g}s" if rest else ""
    return f"{int(minutes)}m{text or '0s'}" if minutes else text
