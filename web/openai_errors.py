"""OpenAI's error object for the `/v1` surface: `{"error": {"message", "type", "param", "code"}}`.

The official SDKs raise their exception classes from the HTTP status (BadRequestError,
AuthenticationError, PermissionDeniedError, NotFoundError, RateLimitError, APIStatusError) and
show `type` and `code`; the types and codes below are the ones OpenAI's API sends for the same
cases, so a client's error handling written against OpenAI works here unchanged.
"""

from __future__ import annotations

from flask import jsonify, request

PREFIX = "/v1/"

# status -> (type, the code when the error carries none that means more)
_BY_STATUS = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    # A spend budget: OpenAI answers an exhausted quota with 429 insufficient_quota.
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
# Our generic codes say no more than the status; OpenAI clients look for these instead.
_GENERIC_CODES = {"validation_error", "unauthorized", "forbidden", "not_found", "conflict",
                  "rate_limited", "internal_error"}


def is_openai_request() -> bool:
    return request.path.startswith(PREFIX)


def error_object(status: int, message: str, *, code: str | None = None,
                 errors: list[dict] | None = None) -> dict:
    """OpenAI's error object for an error of this HTTP status (also sent inside a stream)."""
    error_type, default_code = _BY_STATUS.get(status, ("api_error", None))
    if code in _GENERIC_CODES or code is None or status == 402:
        code = default_code or ("service_unavailable" if status == 503 else None)
    param = errors[0]["field"] if errors else None
    if errors:
        # One line a person can read, like OpenAI's: the first problem names the parameter.
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_error(status: int, message: str, *, code: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None):
    response = jsonify(error_object(status, message, code=code, errors=errors))
    response.status_code = 429 if status == 402 else status
    if headers:
        response.headers.update(headers)
    return response
