"""Alibaba Function Compute as an AI backend: the same interface and error classification as a
direct DashScope call, over the documented function contract.

Request (POST, `Authorization: Bearer FC_AUTH_TOKEN`, `X-Correlation-ID`):
    {"model", "prompt", "messages", "parameters", "user_id", "correlation_id"}
    (+ "action": "submit" | "status" | "cancel" for the Wanx function, see fc/README.md)
Response:
    {"statusCode": 200, "headers": {"Content-Type": "application/json", "X-Correlation-ID"},
     "body": {"success": true, "data": {...},
              "token_usage": {"input_tokens", "output_tokens", "total_tokens"}}}
    or "body": {"success": false, "error": {"code", "message"}} with the upstream's status.
A chat answer's `data` may take any of three shapes (chat_answer below, fc/README.md).

Every invocation is priced (FC_PRICE_PER_REQUEST + duration x FC_PRICE_PER_SECOND) and the
cost travels with the result, or with the error, so the job's usage record can carry it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests

from common.billing.pricing import Usage
from common.infra.metrics import AI_TOKENS, FC_INVOCATIONS, model_label
from common.upstream import dashscope_messages
from common.upstream.failures import UpstreamError, is_retryable_status, retry_after_seconds
from common.upstream.http_session import pooled_session
from common.upstream.instrumentation import upstream_call
from common.upstream.interface import ChatDelta, ChatRequest, ChatResult, TaskRequest, UpstreamTask

CORRELATION_HEADER = "X-Correlation-ID"


class FunctionComputeBackend:
    name = "fc"

    def __init__(self, *, qwen_endpoint: str | None, wanx_endpoint: str | None, token: str,
                 timeout: float, price_per_request: Decimal, price_per_second: Decimal,
                 pool_size: int = 64) -> None:
        self.endpoints = {"qwen": qwen_endpoint, "wanx": wanx_endpoint}
        self.token = token
        self.timeout = timeout
        self.price_per_request = price_per_request
        self.price_per_second = price_per_second
        self.http = {function: pooled_session(endpoint, pool_size=pool_size)
                     for function, endpoint in self.endpoints.items() if endpoint}

    # --- the AI backend interface ---------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResult:
        with upstream_call(request.model, "chat", billed=True):
            data, token_usage, cost, correlation = self._invoke("qwen", {
                "model": request.model, "prompt": None, "messages": request.messages,
                "parameters": request.parameters, "user_id": request.user_id,
                "correlation_id": request.correlation_id})
            message, finish_reason, usage, request_id = chat_answer(data, token_usage, cost)
        AI_TOKENS.labels(model_label(request.model), "input").inc(usage.input_tokens)
        AI_TOKENS.labels(model_label(request.model), "output").inc(usage.output_tokens)
        return ChatResult(message=message, finish_reason=finish_reason, usage=usage,
                          upstream_request_id=request_id or correlation,
                          compute_cost=cost)

    def chat_stream(self, request: ChatRequest,
                    on_delta: Callable[[ChatDelta], bool]) -> ChatResult:
        """A function answers whole (its contract has no stream): the answer is one delta.
        Models DashScope only streams need a function that streams upstream itself."""
        answer = self.chat(request)
        on_delta(ChatDelta(content=answer.message.get("content", ""),
                           reasoning_content=answer.message.get("reasoning_content", ""),
                           finish_reason=answer.finish_reason, usage=answer.usage))
        return answer

    def submit_task(self, request: TaskRequest) -> UpstreamTask:
        with upstream_call(request.model, "image_submit", billed=True):
            data, _usage, cost, _ = self._invoke("wanx", {
                "action": "submit", "model": request.model, "prompt": request.prompt,
                "messages": None, "user_id": request.user_id,
                "correlation_id": request.correlation_id,
                "parameters": {**request.parameters,
                               "negative_prompt": request.negative_prompt}})
            task_id = data.get("task_id") if isinstance(data, dict) else None
            if not task_id:
                raise _malformed("function data lacks task_id", cost)
        return UpstreamTask(task_id=task_id, status=data.get("task_status") or "PENDING",
                            compute_cost=cost)

    def fetch_task(self, task_id: str, model: str | None = None) -> UpstreamTask:
        with upstream_call(model, "task_poll", billed=False):
            data, _usage, cost, _ = self._invoke("wanx", {
                "action": "status", "model": model, "prompt": None, "messages": None,
                "parameters": {"task_id": task_id}, "user_id": None, "correlation_id": None})
            try:
                return UpstreamTask(
                    task_id=task_id, status=data["task_status"],
                    results=data.get("results") or [],
                    image_count=int((data.get("usage") or {}).get("image_count", 0)),
                    code=data.get("code"), message=data.get("message"), compute_cost=cost)
            except (KeyError, TypeError, ValueError) as exc:
                raise _malformed(f"function data lacks {exc}", cost) from exc

    def cancel_task(self, task_id: str, model: str | None = None) -> bool:
        with upstream_call(model, "task_cancel", billed=False):
            data, *_ = self._invoke("wanx", {
                "action": "cancel", "model": model, "prompt": None, "messages": None,
                "parameters": {"task_id": task_id}, "user_id": None, "correlation_id": None})
        return bool(data.get("canceled"))

    # --- one invocation -------------------------------------------------------------------

    def _invoke(self, function: str, payload: dict) -> tuple[Any, Any, Decimal, str]:
        """POST the function request; returns (data, token_usage as sent, invocation cost, the
        correlation id), or raises UpstreamError classified like a direct DashScope call."""
        endpoint = self.endpoints[function]
        if not endpoint:
            raise UpstreamError(code="FunctionNotConfigured", status=None, retryable=False,
                                message=f"No Function Compute endpoint for {function}")
        correlation = payload.get("correlation_id") or _fresh_correlation_id()
        payload["correlation_id"] = correlation
        started = time.perf_counter()
        try:
            response = self.http[function].post(
                endpoint, json=payload, timeout=self.timeout, headers={
                    "Authorization": f"Bearer {self.token}", CORRELATION_HEADER: correlation})
        except requests.exceptions.Timeout as exc:
            raise self._error(function, "FunctionTimeout", None, True, started,
                              f"Function Compute did not answer within {self.timeout:g}s"
                              ) from exc
        except requests.exceptions.RequestException as exc:
            raise self._error(function, "FunctionUnreachable", None, True, started,
                              f"Function Compute unreachable: {type(exc).__name__}") from exc
        cost = self._cost(started)
        envelope = _envelope(response)
        if envelope is None:
            retryable = response.status_code >= 500 or is_retryable_status(response.status_code)
            code = ("FunctionUnauthorized" if response.status_code in (401, 403)
                    else "FunctionError" if response.status_code >= 400
                    else "FunctionMalformedResponse")
            raise self._error(function, code, response.status_code,
                              retryable or code == "FunctionMalformedResponse", started,
                              f"Function Compute answered HTTP {response.status_code} "
                              f"{response.text[:200]!r}", response.headers)
        status = int(envelope.get("statusCode") or response.status_code)
        echoed = _header(envelope.get("headers"), CORRELATION_HEADER) or \
            response.headers.get(CORRELATION_HEADER)
        if echoed != correlation:
            raise self._error(function, "FunctionCorrelationMismatch", status, False, started,
                              f"sent correlation id {correlation!r}, got {echoed!r}")
        body = envelope.get("body")
        if isinstance(body, str):
            body = _json_or_none(body)
        if not isinstance(body, dict):
            raise self._error(function, "FunctionMalformedResponse", status, True, started,
                              "the function's body is not a JSON object")
        if not body.get("success") or status >= 400:
            error = body.get("error") or {}
            code = error.get("code") or ("FunctionUnauthorized" if status in (401, 403)
                                         else f"HTTP{status}")
            raise self._error(function, code, status, is_retryable_status(status), started,
                              error.get("message") or "the function reported a failure",
                              response.headers, retry_after=error.get("retry_after"))
        FC_INVOCATIONS.labels(function, "success").inc()
        return body.get("data") or {}, body.get("token_usage"), cost, correlation

    def _cost(self, started: float) -> Decimal:
        duration = Decimal(str(round(time.perf_counter() - started, 3)))
        return (self.price_per_request + duration * self.price_per_second).quantize(
            Decimal("0.00000001"))

    def _error(self, function: str, code: str, status: int | None, retryable: bool,
               started: float, message: str, headers=None, retry_after=None) -> UpstreamError:
        FC_INVOCATIONS.labels(function, "error").inc()
        if retry_after is None and headers is not None:
            retry_after = retry_after_seconds(dict(headers))
        return UpstreamError(code=code, message=message[:1000], status=status,
                             retryable=retryable, retry_after=retry_after,
                             compute_cost=self._cost(started))


def _envelope(response: requests.Response) -> dict | None:
    payload = _json_or_none(response.text)
    return payload if isinstance(payload, dict) and "body" in payload else None


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _header(headers, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def chat_answer(data: Any, token_usage: Any,
                cost: Decimal) -> tuple[dict, str, Usage, str | None]:
    """(message, finish_reason, usage, upstream request id) of a chat function's answer.

    `data` may be
    - the contract's own shape: {"message": {"role", "content"}, "finish_reason", "request_id"};
    - an OpenAI chat.completion (what a function written against the OpenAI-compatible chat
      contract returns): {"id", "choices": [{"message", "finish_reason"}],
      "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}};
    - DashScope's native answer: {"request_id", "output": {"choices": [{"message",
      "finish_reason"}]} or {"text", "finish_reason"}, "usage": {"input_tokens", ...}}.
    Usage is `token_usage` (the contract's field) when the function sent it, else the usage
    inside `data` in that shape's names. Anything else is a FunctionMalformedResponse."""
    try:
        if not isinstance(data, dict):
            raise ValueError("is not an object")
        if "message" in data:
            choice, request_id = data, data.get("request_id")
        elif "choices" in data:
            choice, request_id = data["choices"][0], data.get("id")
        elif "output" in data:
            output, request_id = data["output"], data.get("request_id")
            choice = output["choices"][0] if output.get("choices") else {
                "message": {"role": "assistant", "content": output["text"]},
                "finish_reason": output.get("finish_reason")}
        else:
            raise ValueError("has none of message, choices[0].message, output")
        calls = choice["message"].get("tool_calls")
        content = choice["message"]["content"]
        # A tool-calling answer may have no content (OpenAI's null); any other needs text.
        message = {"role": choice["message"]["role"],
                   "content": "" if content is None and calls else content}
        finish_reason = choice["finish_reason"]
        if not isinstance(message["content"], str):
            raise ValueError("has a message content that is not a string")
        if calls:
            # In OpenAI's shape whichever shape the function answered in.
            message["tool_calls"] = dashscope_messages.tool_calls(calls)
            finish_reason = "tool_calls" if finish_reason in (None, "stop") else finish_reason
        usage = _token_usage(token_usage if isinstance(token_usage, dict)
                             else data.get("usage"))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
        raise _malformed(f"function data {detail} (accepted: message, choices[0].message, "
                         "output.choices[0].message or output.text)", cost) from exc
    return message, finish_reason, usage, request_id


def _token_usage(raw) -> Usage:
    """Usage in the contract's names (input_tokens, output_tokens) or OpenAI's (prompt_tokens,
    completion_tokens); absent counts are zero, as the contract has always read them."""
    raw = raw if isinstance(raw, dict) else {}
    input_tokens = int(raw.get("input_tokens", raw.get("prompt_tokens", 0)))
    output_tokens = int(raw.get("output_tokens", raw.get("completion_tokens", 0)))
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                 total_tokens=int(raw.get("total_tokens", input_tokens + output_tokens)))


def _malformed(message: str, cost: Decimal) -> UpstreamError:
    return UpstreamError(code="FunctionMalformedResponse", status=200, retryable=True,
                         message=message, compute_cost=cost)


def _fresh_correlation_id() -> str:
    return uuid.uuid4().hex
