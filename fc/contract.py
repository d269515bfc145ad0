"""The function contract both handlers share: event parsing, the bearer token, the response.

Request:  {"model", "prompt", "messages", "parameters", "user_id", "correlation_id"}
Response: {"statusCode", "headers": {"Content-Type", "X-Correlation-ID"},
           "body": {"success": true, "data": {...}, "token_usage": {...}}}
          or "body": {"success": false, "error": {"code", "message"[, "retry_after"]}}

A DashScope failure keeps DashScope's HTTP status as `statusCode`, so the worker classifies a
failed invocation exactly like a failed direct call.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
from collections.abc import Callable

from common.upstream.failures import UpstreamError

logger = logging.getLogger(__name__)
CORRELATION = "X-Correlation-ID"


class FunctionError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    @classmethod
    def from_upstream(cls, error: UpstreamError) -> FunctionError:
        status = error.status or (504 if "Timeout" in error.code else 502)
        return cls(status, error.code, error.message, error.retry_after)


def parse_event(event) -> tuple[dict[str, str], dict]:
    """Headers (lower-cased) and JSON body of an HTTP-trigger event (or of a bare JSON body)."""
    raw = event.decode() if isinstance(event, bytes | bytearray) else event
    data = json.loads(raw) if isinstance(raw, str) else (raw or {})
    if "body" in data and ("headers" in data or "requestContext" in data):
        headers = {k.lower(): str(v) for k, v in (data.get("headers") or {}).items()}
        body = data.get("body") or ""
        if data.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        payload = json.loads(body) if isinstance(body, str) and body else body
    else:  # invoked directly with the request as the event
        headers, payload = {}, data
    if not isinstance(payload, dict):
        raise FunctionError(400, "InvalidParameter", "the request body must be a JSON object")
    return headers, payload


def authorize(headers: dict[str, str]) -> None:
    """Constant-time check of the bearer token against FC_AUTH_TOKEN."""
    expected = os.environ.get("FC_AUTH_TOKEN", "")
    presented = headers.get("authorization", "")
    presented = presented[7:] if presented.lower().startswith("bearer ") else ""
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise FunctionError(401, "FunctionUnauthorized", "missing or invalid bearer token")


def respond(status: int, body: dict, correlation_id: str | None) -> dict:
    return {"statusCode": status,
            "headers": {"Content-Type": "application/json", CORRELATION: correlation_id or ""},
            "body": body}


def handle(event, work: Callable[[dict], tuple[dict, dict]]) -> dict:
    """Run `work(request) -> (data, token_usage)` under the contract; never raises."""
    correlation_id = None
    try:
        headers, request = parse_event(event)
        correlation_id = request.get("correlation_id") or headers.get(CORRELATION.lower())
        authorize(headers)
        data, token_usage = work(request)
        return respond(200, {"success": True, "data": data, "token_usage": token_usage},
                       correlation_id)
    except FunctionError as error:
        failure = {"code": error.code, "message": error.message}
        if error.retry_after is not None:
            failure["retry_after"] = error.retry_after
        return respond(error.status, {"success": False, "error": failure}, correlation_id)
    except (ValueError, TypeError) as exc:
        return respond(400, {"success": False, "error": {
            "code": "InvalidParameter", "message": f"malformed request: {exc}"}}, correlation_id)


def require(request: dict, name: str, kind: type | tuple, *, optional: bool = False):
    value = request.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise FunctionError(400, "InvalidParameter", f"{name} is missing or of the wrong type")
    return value
