"""The account-wide limits hold across concurrent callers, on a real Redis."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid

import redis

from common.upstream.account_limits import InflightTasks, RateBudget


def _client(redis_url) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def test_sliding_window_never_grants_more_than_the_limit_in_any_second(redis_url):
    """Grants are timed on Redis's clock; with the platform's 1.1 s window, callers that see
    their grant up to 100 ms late still never see more than the limit in any second."""
    key = f"test:window:{uuid.uuid4()}"
    grants: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def hammer(_):
        window = RateBudget(_client(redis_url), key, limit=20, window_seconds=1.1)
        while time.monotonic() < stop:
            wait = window.acquire()
            if wait == 0:
                with lock:
                    grants.append(time.monotonic())
            else:
                assert 0 < wait <= 1.1
                time.sleep(min(wait, 0.05))
        return None

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        list(pool.map(hammer, range(12)))
    grants.sort()
    assert len(grants) >= 40  # it did grant, about 18 per second
    for i, start in enumerate(grants):
        in_window = sum(1 for t in grants[i:] if t < start + 0.999)
        assert in_window <= 20


def test_inflight_slots_respect_the_limit_release_and_expire(redis_url):
    client = _client(redis_url)
    slots = InflightTasks(client)
    model = f"model-{uuid.uuid4().hex[:6]}"
    assert slots.acquire(model, "a", limit=2, ttl_seconds=30)
    assert slots.acquire(model, "b", limit=2, ttl_seconds=30)
    assert not slots.acquire(model, "c", limit=2, ttl_seconds=30)
    assert slots.acquire(model, "a", limit=2, ttl_seconds=30)  # re-acquire refreshes
    assert slots.count([model]) == 2
    slots.release(model, "a")
    assert slots.acquire(model, "c", limit=2, ttl_seconds=0.3)
    time.sleep(0.5)  # c's slot expires: a crashed worker never frees it
    assert slots.count([model]) == 1
    assert slots.acquire(model, "d", limit=2, ttl_seconds=30)
    assert slots.acquire(f"{model}-other", "x", limit=0, ttl_seconds=30)  # 0 = unlimited
    assert slots.count([model, f"{model}-other"]) == 3
