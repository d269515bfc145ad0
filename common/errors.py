"""One error hierarchy: each error carries its HTTP status and a machine-readable code.

Services raise these; `web/errors.py` turns them into the response envelope. Nothing here knows
about Flask.
"""

from __future__ import annotations


class AppError(Exception):
    status = 500
    code = "internal_error"
    message = "Internal server error"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if code:
            self.code = code
        self.errors = errors
        self.headers = headers or {}


class ValidationFailed(AppError):
    status = 400
    code = "validation_error"
    message = "Request validation failed"


class AuthenticationFailed(AppError):
    status = 401
    code = "unauthorized"
    message = "Authentication required"


class PermissionDenied(AppError):
    status = 403
    code = "forbidden"
    message = "You are not allowed to do this"


class NotFound(AppError):
    status = 404
    code = "not_found"
    message = "Not found"


class Conflict(AppError):
    status = 409
    code = "conflict"
    message = "Conflict"


class TooManyRequests(AppError):
    status = 429
    code = "rate_limited"
    message = "Too many requests"


class ServiceUnavailable(AppError):
    """A dependency (database, Redis, broker) is unreachable: retry later, nothing was done."""

    status = 503
    code = "service_unavailable"
    message = "Service temporarily unavailable, please retry"

    def __init__(self, message: str | None = None, *, retry_after: int = 5, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class BudgetExceeded(AppError):
    """A spend budget cannot cover a request's worst-case cost (on /v1: OpenAI's 429
    insufficient_quota, web/openai_errors.py)."""

    status = 402
    code = "budget_exceeded"
    message = "Spend budget exceeded"
