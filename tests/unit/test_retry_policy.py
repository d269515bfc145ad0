"""Upstream failures: which are retried, how long to wait, and how a failed job reads over HTTP."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from common.upstream.failures import (
    RetryPolicy,
    UpstreamError,
    http_status_for,
    is_retryable_status,
    retry_after_seconds,
)

POLICY = RetryPolicy(base_seconds=1, max_seconds=30, max_attempts=5)


def error(retry_after=None) -> UpstreamError:
    return UpstreamError(code="Throttling", message="slow down", status=429, retryable=True,
                         retry_after=retry_after)


@pytest.mark.parametrize("status, retryable", [(429, True), (500, True), (502, True),
                                               (503, True), (504, True), (400, False),
                                               (401, False), (403, False), (404, False)])
def test_retryable_statuses(status, retryable):
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 10])
def test_backoff_grows_with_jitter_and_is_capped(attempt):
    ceiling = min(30, 2 ** (attempt - 1))
    delays = [POLICY.delay(error(), attempt) for _ in range(200)]
    assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered


def test_retry_after_is_a_floor_but_never_beyond_the_cap():
    assert POLICY.delay(error(retry_after=7), 1) >= 7
    assert POLICY.delay(error(retry_after=3600), 1) <= 30


def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_seconds({"Retry-After": "3"}) == 3
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    parsed = retry_after_seconds({"Retry-After": email.utils.format_datetime(when)})
    assert 18 <= parsed <= 20
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize("code, status", [
    ("InvalidParameter", 400), ("DataInspectionFailed", 400), ("BadRequest.EmptyInput", 400),
    ("InvalidApiKey", 502), ("Arrearage", 502), ("InternalError", 502),
    ("Throttling.RateQuota", 503), ("ModelUnavailable", 503),
    ("deadline_exceeded", 504), ("UpstreamTimeout", 504)])
def test_failed_jobs_map_to_honest_http_statuses(code, status):
    assert http_status_for(code) == status


def test_a_failure_is_final_when_not_retryable_out_of_attempts_or_past_the_deadline():
    assert POLICY.next_attempt_in(error(), 1, seconds_left=600) is not None
    permanent = UpstreamError(code="InvalidApiKey", message="", status=401, retryable=False)
    assert POLICY.next_attempt_in(permanent, 1, seconds_left=600) is None
    assert POLICY.next_attempt_in(error(), 5, seconds_left=600) is None  # the fifth attempt
    assert POLICY.next_attempt_in(error(retry_after=20), 1, seconds_left=10) is None
