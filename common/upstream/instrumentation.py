"""Upstream calls are timed and counted where they happen, by one context manager."""

from __future__ import annotations

import contextlib
import time

from common.infra.metrics import AI_DURATION, AI_ERRORS, AI_REQUESTS, model_label
from common.upstream.failures import UpstreamError, code_label


@contextlib.contextmanager
def upstream_call(model: str | None, operation: str, *, billed: bool):
    """Time one upstream call and count its outcome; `billed` calls (chat, image submits)
    also count in ai_requests_total. UpstreamError is counted by code and re-raised."""
    label = model_label(model)
    started = time.perf_counter()
    try:
        yield
    except UpstreamError as error:
        AI_ERRORS.labels(label, operation, code_label(error.code)).inc()
        if billed:
            AI_REQUESTS.labels(label, "error").inc()
        raise
    finally:
        AI_DURATION.labels(label, operation).observe(time.perf_counter() - started)
    if billed:
        AI_REQUESTS.labels(label, "success").inc()
