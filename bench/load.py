"""Load generation and statistics for the benchmarks (threads + keep-alive sessions)."""

from __future__ import annotations

import concurrent.futures
import statistics
import threading
import time
from collections.abc import Callable


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms) if ms else float("nan"), "n": len(ms)}


def run_concurrently(worker: Callable[[int], list], concurrency: int) -> list:
    """Run worker(thread_index) in `concurrency` threads; concatenate what they return."""
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(worker, range(concurrency)))
    return [item for chunk in results for item in chunk]


def throughput(make_call: Callable[[], Callable[[], None]], concurrency: int,
               seconds: float, warmup: float = 1.0) -> tuple[float, int]:
    """Requests per second that `concurrency` threads sustain for `seconds` (after warm-up).

    make_call() runs once per thread and returns the call that thread repeats (so each thread
    can own its HTTP session).
    """
    stop = threading.Event()
    counting = threading.Event()
    counts = [0] * concurrency
    errors = [0] * concurrency

    def loop(index: int) -> list:
        call = make_call()
        while not stop.is_set():
            try:
                call()
                if counting.is_set():
                    counts[index] += 1
            except Exception:
                errors[index] += 1
        return []

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(loop, i) for i in range(concurrency)]
        time.sleep(warmup)
        counting.set()
        started = time.perf_counter()
        time.sleep(seconds)
        counting.clear()
        elapsed = time.perf_counter() - started
        stop.set()
        for future in futures:
            future.result()
    return sum(counts) / elapsed, sum(errors)
