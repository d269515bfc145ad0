"""The emulator's server-wide knobs and what it has counted."""

from __future__ import annotations

import collections
import dataclasses
import random
import time
from typing import Any


@dataclasses.dataclass
class Config:
    """Server-wide behaviour; set by CLI flags, changed live with POST /_emulator/config."""

    api_key: str = "sk-emulator"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_limit_rps: float = 0.0  # 0 = unlimited; applies to text generation
    rate_limit_retry_after: float | None = None
    fault_rates: dict[str, float] = dataclasses.field(default_factory=dict)  # fault -> share
    hang_seconds: float = 600.0
    chunk_interval_ms: float = 0.0  # pause between stream events, so a stream stays open
    image_pending_s: float = 0.0
    image_duration_s: float = 2.0
    image_concurrency: int = 0  # running tasks per model; 0 = unlimited
    image_submit_qps: float = 0.0  # per model; 0 = unlimited
    task_ttl_s: float = 24 * 3600  # after this a task reads as UNKNOWN
    images_expired: bool = False  # result URLs stop answering, like OSS after 24 h
    seed: int = 0

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, value)

    def delay_seconds(self, rng: random.Random) -> float:
        jitter = rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0


class Stats:
    """Counts of what arrived, for tests that assert "no second upstream call"."""

    def __init__(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.by_model: collections.Counter[str] = collections.Counter()
        self.task_queries_per_second: collections.Counter[int] = collections.Counter()
        self.submits_per_second: collections.Counter[int] = collections.Counter()
        self.log: collections.deque[dict] = collections.deque(maxlen=2000)
        self.directive_hits: collections.Counter[str] = collections.Counter()
        # How streams ended: completed, failed (an error event), disconnected (by the client).
        self.streams: collections.Counter[str] = collections.Counter()

    def record(self, endpoint: str, *, model: str | None = None, headers=None,
               directive: str | None = None) -> None:
        now = time.time()
        self.requests[endpoint] += 1
        if model:
            self.by_model[f"{endpoint}:{model}"] += 1
        if endpoint == "task_get":
            self.task_queries_per_second[int(now)] += 1
        if endpoint == "image_submit":
            self.submits_per_second[int(now)] += 1
        self.log.append({
            "at": now, "endpoint": endpoint, "model": model, "directive": directive,
            "request_id": (headers or {}).get("X-Request-ID"),
        })

    def snapshot(self) -> dict:
        return {
            "requests": dict(self.requests),
            "by_model": dict(self.by_model),
            "max_task_queries_per_second": max(self.task_queries_per_second.values(),
                                               default=0),
            "task_queries_per_second": {str(k): v for k, v in
                                        sorted(self.task_queries_per_second.items())},
            "max_submits_per_second": max(self.submits_per_second.values(), default=0),
            "streams": dict(self.streams),
            "log": list(self.log),
        }


class RateLimiter:
    """A sliding one-second window, like the per-second enforcement of RPM/60 upstream."""

    def __init__(self) -> None:
        self._hits: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)

    def allow(self, key: str, per_second: float) -> bool:
        if per_second <= 0:
            return True
        now = time.monotonic()
        hits = self._hits[key]
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) >= per_second:
            return False
        hits.append(now)
        return True
