"""DashScope through its official SDK (1.x API), with every failure classified.

The SDK is called with an explicit base address, key and HTTP session per call, never through
its module-level globals, so one process can talk to several endpoints and tests point it at
the emulator through settings alone.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from http import HTTPStatus
from typing import Any

import requests
from dashscope import Generation
from requests.adapters import HTTPAdapter

from common.ai.base import ChatRequest, ChatResult, UpstreamError, is_retryable_status
from common.pricing import Usage

logger = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Request-ID"


class DashScopeBackend:
    name = "dashscope"

    def __init__(self, *, api_key: str, base_url: str, timeout: float,
                 pool_size: int = 64) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # One pooled session for the process: keep-alive connections to DashScope, sized for
        # the worker's concurrency so threads never queue for (or discard) a connection.
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def chat(self, request: ChatRequest) -> ChatResult:
        response = self._call(
            Generation.call,
            model=request.model,
            messages=request.messages,
            result_format="message",
            headers=self._headers(request.correlation_id),
            **request.parameters,
        )
        try:
            choice = response.output.choices[0]
            message = {"role": choice.message.role, "content": choice.message.content}
            finish_reason = choice.finish_reason
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise _malformed(response, exc) from exc
        return ChatResult(message=message, finish_reason=finish_reason,
                          usage=_usage(response.usage), upstream_request_id=response.request_id)

    def _headers(self, correlation_id: str | None) -> dict[str, str]:
        return {CORRELATION_HEADER: correlation_id} if correlation_id else {}

    def _call(self, fn, **kwargs) -> Any:
        """One SDK call; transport failures and non-200 answers become UpstreamError."""
        try:
            response = fn(api_key=self.api_key, base_address=self.base_url,
                          request_timeout=self.timeout, session=self.http, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise UpstreamError(code="UpstreamTimeout", status=None, retryable=True,
                                message=f"DashScope did not answer within {self.timeout:g}s"
                                ) from exc
        except requests.exceptions.RequestException as exc:
            raise UpstreamError(code="UpstreamConnectionError", status=None, retryable=True,
                                message=f"Connection to DashScope failed: {type(exc).__name__}"
                                ) from exc
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            # The SDK itself raises these on a 200 it cannot parse (e.g. without `output`).
            raise UpstreamError(code="UpstreamMalformedResponse", status=HTTPStatus.OK,
                                retryable=True, message=f"Unparseable DashScope response: {exc}"
                                ) from exc
        if response.status_code != HTTPStatus.OK:
            raise UpstreamError(
                code=response.code or f"HTTP{response.status_code}",
                message=str(response.message or "")[:1000],
                status=response.status_code,
                retryable=is_retryable_status(response.status_code),
                retry_after=retry_after_seconds(response.headers),
                request_id=response.request_id or None,
            )
        return response


def _usage(raw: Any) -> Usage:
    if not raw:
        logger.warning("dashscope response without usage; recording zero tokens")
        return Usage()
    get = raw.get if hasattr(raw, "get") else lambda k, d=None: getattr(raw, k, d)
    input_tokens = int(get("input_tokens", 0) or 0)
    output_tokens = int(get("output_tokens", 0) or 0)
    total = int(get("total_tokens", 0) or (input_tokens + output_tokens))
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total,
                 image_count=int(get("image_count", 0) or 0))


def _malformed(response, exc: Exception) -> UpstreamError:
    return UpstreamError(code="UpstreamMalformedResponse", status=HTTPStatus.OK, retryable=True,
                         message=f"DashScope response lacks {exc}",
                         request_id=getattr(response, "request_id", None))


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
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
