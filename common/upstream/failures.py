"""Everything the platform knows about upstream failures, in one place.

- `UpstreamError`: a failed call to DashScope or Function Compute, classified once by the
  backend that made it (retryable or not, Retry-After, what a failed attempt still cost);
- `UpstreamStatus`: the states of an upstream task, and which of them are final;
- the retry policy: how long to wait before the next attempt, and whether there is one;
- how a job that failed with an upstream (or platform) code reads over HTTP.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import enum
import random
from decimal import Decimal

from common.infra.metrics import OTHER

# Failures the platform decides itself (upstream failures keep upstream's own code).
DEADLINE_EXCEEDED = "deadline_exceeded"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
TASK_UNKNOWN = "UpstreamTaskUnknown"
TASK_FAILED = "TaskFailed"
BACKEND_NOT_CONFIGURED = "BackendNotConfigured"


class UpstreamError(Exception):
    """A failed upstream call, classified once so callers only ask `retryable`.

    `code` and `message` are the upstream's own (e.g. Throttling.RateQuota) or, for transport
    failures, ours (UpstreamTimeout, UpstreamConnectionError, UpstreamMalformedResponse).
    """

    def __init__(self, *, code: str, message: str, status: int | None, retryable: bool,
                 retry_after: float | None = None, request_id: str | None = None,
                 compute_cost: Decimal = Decimal(0)) -> None:
        super().__init__(f"{code}: {message}")
        self.compute_cost = compute_cost
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.request_id = request_id


class UpstreamStatus(str, enum.Enum):  # noqa: UP042 - fc/ runs this on Python 3.10
    """An upstream task's state as DashScope reports it, plus UNREACHABLE: we stopped asking
    because no query could ever succeed (e.g. the API key was revoked)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"
    UNREACHABLE = "UNREACHABLE"

    def __str__(self) -> str:  # the value, as StrEnum would give (drivers bind str(value))
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self not in (UpstreamStatus.PENDING, UpstreamStatus.RUNNING)

    @classmethod
    def terminal(cls) -> tuple[str, ...]:
        return tuple(status.value for status in cls if status.is_terminal)


RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_retryable_status(status: int | None) -> bool:
    return status in RETRYABLE_STATUSES


def retry_after_seconds(headers: dict | None) -> float | None:
    """Retry-After as seconds, from either delta-seconds or an HTTP date."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)  # noqa: UP017 - fc runs on Python 3.10
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())  # noqa: UP017


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, never sooner than the upstream's Retry-After, within an
    attempt budget and the job's deadline."""

    base_seconds: float
    max_seconds: float
    max_attempts: int

    @classmethod
    def from_settings(cls, settings) -> RetryPolicy:
        return cls(settings.upstream_retry_base_seconds, settings.upstream_retry_max_seconds,
                   settings.job_max_attempts)

    def delay(self, error: UpstreamError, attempt: int) -> float:
        backoff = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        delay = backoff * random.uniform(0.5, 1.0)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_seconds))
        return delay

    def next_attempt_in(self, error: UpstreamError, attempt: int,
                        seconds_left: float) -> float | None:
        """Seconds until the next attempt, or None when this failure is final: not retryable,
        the attempts are spent, or the wait would outlast the job's deadline."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        delay = self.delay(error, attempt)
        return delay if delay < seconds_left else None


# DashScope's documented error codes (dashscope-protocol.md section 6.2) and our own: the only
# values an error-code label may take, so an unknown code cannot mint new series.
KNOWN_CODES = frozenset({
    "InvalidParameter", "DataInspectionFailed", "Arrearage", "UnsupportedOperation",
    "BadRequest.EmptyInput", "BadRequest.EmptyParameters", "BadRequest.EmptyModel",
    "InvalidURL", "IPInfringementSuspect", "InvalidApiKey", "AccessDenied",
    "AccessDenied.Unpurchased", "Model.AccessDenied", "Workspace.AccessDenied",
    "AllocationQuota.FreeTierOnly", "ModelNotFound", "WorkSpaceNotFound", "RequestTimeOut",
    "BadRequest.TooLarge", "Throttling", "Throttling.RateQuota", "Throttling.AllocationQuota",
    "LimitRequests", "PrepaidBillOverdue", "PostpaidBillOverdue", "CommodityNotPurchased",
    "InternalError", "InternalError.Algo", "InternalError.Timeout", "SystemError",
    "ModelUnavailable", "ServiceUnavailable", "GatewayTimeout", "UpstreamTimeout",
    "UpstreamConnectionError", "UpstreamMalformedResponse", TASK_UNKNOWN,
    DEADLINE_EXCEEDED, ATTEMPTS_EXHAUSTED, TASK_FAILED, "FunctionTimeout",
    "FunctionUnreachable", "FunctionUnauthorized", "FunctionError", "FunctionMalformedResponse",
    "FunctionCorrelationMismatch", "FunctionNotConfigured", BACKEND_NOT_CONFIGURED,
})


def code_label(code: str | None) -> str:
    return code if code in KNOWN_CODES else OTHER


# Content DashScope refused: the client's request was at fault.
_CLIENT_ERRORS = ("InvalidParameter", "DataInspectionFailed", "BadRequest", "InvalidURL",
                  "IPInfringementSuspect")
_TIMEOUTS = frozenset({DEADLINE_EXCEEDED, "UpstreamTimeout", "RequestTimeOut", "GatewayTimeout"})
_UNAVAILABLE = frozenset({"ModelUnavailable", "ServiceUnavailable"})


def http_status_for(code: str | None) -> int:
    """How a job that failed with `code` answers a client who waited for it."""
    code = code or ""
    if code.startswith(_CLIENT_ERRORS):
        return 400
    if code in _TIMEOUTS:
        return 504
    if code.startswith("Throttling") or code in _UNAVAILABLE:
        return 503
    return 502
