"""DashScope through its official SDK (1.x API), with every failure classified.

The SDK is called with an explicit base address, key and HTTP session per call, never through
its module-level globals, so one process can talk to several endpoints and tests point it at
the emulator through settings alone. Image tasks are submitted with the 1.x
`ImageSynthesis.async_call`; they are fetched and canceled through the SDK's 2.0 `Client`,
because the 1.x task calls wait up to 300 s (cancel: forever) and a worker thread must never
hang on DashScope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import dashscope
import requests
from dashscope import Generation, ImageSynthesis, VideoSynthesis
from dashscope.v2 import errors as v2_errors

from common.billing.pricing import Usage
from common.infra.metrics import AI_TOKENS, model_label
from common.upstream.failures import UpstreamError, is_retryable_status, retry_after_seconds
from common.upstream.http_session import pooled_session
from common.upstream.instrumentation import upstream_call
from common.upstream.interface import (
    ChatDelta,
    ChatRequest,
    ChatResult,
    TaskRequest,
    UpstreamTask,
)

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
        self.http = pooled_session(self.base_url, pool_size=pool_size)
        self.tasks = dashscope.Client(api_key=api_key, base_url=self.base_url, protocol="native",
                                      timeout=timeout, max_retries=0)

    def chat(self, request: ChatRequest) -> ChatResult:
        with upstream_call(request.model, "chat", billed=True):
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
        usage = _usage(response.usage)
        AI_TOKENS.labels(model_label(request.model), "input").inc(usage.input_tokens)
        AI_TOKENS.labels(model_label(request.model), "output").inc(usage.output_tokens)
        return ChatResult(message=message, finish_reason=finish_reason, usage=usage,
                          upstream_request_id=response.request_id)

    def chat_stream(self, request: ChatRequest,
                    on_delta: Callable[[ChatDelta], bool]) -> ChatResult:
        content: list[str] = []
        reasoning: list[str] = []
        usage, finish_reason, request_id, stopped = Usage(), "stop", None, False
        with upstream_call(request.model, "chat", billed=True):
            chunks = self._call(
                Generation.call, model=request.model, messages=request.messages,
                result_format="message", stream=True, incremental_output=True,
                headers=self._headers(request.correlation_id), **request.parameters)
            try:
                for response in chunks:
                    _raise_for_status(response)
                    request_id = response.request_id or request_id
                    delta = _delta(response)
                    usage = delta.usage
                    content.append(delta.content)
                    reasoning.append(delta.reasoning_content)
                    if delta.finish_reason is not None:
                        finish_reason = delta.finish_reason
                    if not on_delta(delta):
                        stopped = True
                        break
            except requests.exceptions.RequestException as exc:
                raise _transport_error(exc, self.timeout) from exc
            finally:
                chunks.close()  # stops the upstream read (the SDK's response goes with it)
        AI_TOKENS.labels(model_label(request.model), "input").inc(usage.input_tokens)
        AI_TOKENS.labels(model_label(request.model), "output").inc(usage.output_tokens)
        message = {"role": "assistant", "content": "".join(content)}
        if any(reasoning):
            message["reasoning_content"] = "".join(reasoning)
        return ChatResult(message=message, finish_reason=finish_reason, usage=usage,
                          upstream_request_id=request_id, stopped=stopped)

    def submit_task(self, request: TaskRequest) -> UpstreamTask:
        """Image tasks go through `ImageSynthesis.async_call` (text2image, or image2image for
        edit models), videos through `VideoSynthesis.async_call` (video-generation, or
        image2video for keyframe models): the SDK picks the endpoint by model name, and adds
        `X-DashScope-OssResourceResolve` when an input is an oss:// URL."""
        synthesis = VideoSynthesis if request.video else ImageSynthesis
        with upstream_call(request.model, "video_submit" if request.video else "image_submit",
                           billed=True):
            response = self._call(
                synthesis.async_call,
                model=request.model,
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                headers=self._headers(request.correlation_id),
                **request.inputs,
                **request.parameters,
            )
            task_id = getattr(response.output, "task_id", None)
            if not task_id:
                raise _malformed(response, "task_id")
        return UpstreamTask(task_id=task_id, status=getattr(response.output, "task_status", None)
                            or "PENDING")

    def fetch_task(self, task_id: str, model: str | None = None) -> UpstreamTask:
        """Any task kind: GET /tasks/{id} answers images in `results` and a video in
        `video_url` (dashscope-protocol-2.md section 7.4)."""
        with upstream_call(model, "task_poll", billed=False):
            try:
                job = self.tasks.images.jobs.fetch(task_id, timeout=self.timeout)
            except v2_errors.APIStatusError as exc:
                if exc.status_code == HTTPStatus.OK:
                    # A FAILED task is an HTTP 200 whose code and message sit inside `output`.
                    return UpstreamTask(task_id=task_id, status="FAILED", code=exc.code,
                                        message=exc.message)
                raise _from_v2(exc) from exc
            except v2_errors.DashScopeError as exc:
                raise _from_v2(exc) from exc
        output = job.output or {}
        usage = job.usage.model_dump() if job.usage is not None else {}
        results = [_result_entry(item) for item in output.get("results") or []]
        generated = sum(1 for item in results if item.get("url"))
        image_count = int(usage.get("image_count") or 0) if usage else generated
        video_url = output.get("video_url") or None
        # wan2.1-era usage says video_duration, wan2.2+ duration (section 7.4).
        seconds = usage.get("video_duration") or usage.get("duration") or 0
        return UpstreamTask(task_id=task_id, status=job.status or "UNKNOWN", results=results,
                            image_count=image_count, video_url=video_url,
                            poster_url=output.get("cover_image_url") or None,
                            video_seconds=int(float(seconds)),
                            video_count=int(usage.get("video_count") or (1 if video_url else 0)),
                            code=output.get("code"), message=output.get("message"))

    def cancel_task(self, task_id: str, model: str | None = None) -> bool:
        with upstream_call(model, "task_cancel", billed=False):
            try:
                self.tasks.images.jobs.cancel(task_id, timeout=self.timeout)
            except v2_errors.APIStatusError as exc:
                if exc.code == "UnsupportedOperation":
                    return False  # no longer PENDING: it will finish (and be billed) anyway
                raise _from_v2(exc) from exc
            except v2_errors.DashScopeError as exc:
                raise _from_v2(exc) from exc
        return True

    def _headers(self, correlation_id: str | None) -> dict[str, str]:
        return {CORRELATION_HEADER: correlation_id} if correlation_id else {}

    def _call(self, fn, **kwargs) -> Any:
        """One SDK call; transport failures and non-200 answers become UpstreamError."""
        try:
            response = fn(api_key=self.api_key, base_address=self.base_url,
                          request_timeout=self.timeout, session=self.http, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise _transport_error(exc, self.timeout) from exc
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            # The SDK itself raises these on a 200 it cannot parse (e.g. without `output`).
            raise UpstreamError(code="UpstreamMalformedResponse", status=HTTPStatus.OK,
                                retryable=True, message=f"Unparseable DashScope response: {exc}"
                                ) from exc
        if kwargs.get("stream"):
            return response  # a generator: each of its responses is checked as it comes
        _raise_for_status(response)
        return response


def _transport_error(exc: requests.exceptions.RequestException, timeout: float
                     ) -> UpstreamError:
    if isinstance(exc, requests.exceptions.Timeout):
        return UpstreamError(code="UpstreamTimeout", status=None, retryable=True,
                             message=f"DashScope did not answer within {timeout:g}s")
    return UpstreamError(code="UpstreamConnectionError", status=None, retryable=True,
                         message=f"Connection to DashScope failed: {type(exc).__name__}")


def _raise_for_status(response) -> None:
    """A non-200 answer, or an error event inside a stream, as an UpstreamError."""
    if response.status_code != HTTPStatus.OK:
        raise UpstreamError(
            code=response.code or f"HTTP{response.status_code}",
            message=str(response.message or "")[:1000],
            status=response.status_code,
            retryable=is_retryable_status(response.status_code),
            retry_after=retry_after_seconds(response.headers),
            request_id=response.request_id or None,
        )


def _delta(response) -> ChatDelta:
    """One incremental stream chunk (dashscope-protocol-2.md section 1): the new text, the
    new reasoning, `finish_reason` ("null" until the last chunk) and the cumulative usage."""
    try:
        choice = response.output.choices[0]
        message = choice.message
        content = message.content or ""
        reasoning = message.get("reasoning_content") or "" if hasattr(message, "get") else ""
        finish_reason = choice.finish_reason
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise _malformed(response, exc) from exc
    if not isinstance(content, str):
        raise _malformed(response, "text content")
    return ChatDelta(content=content, reasoning_content=reasoning,
                     finish_reason=None if finish_reason in (None, "null") else finish_reason,
                     usage=_usage(response.usage, quiet=True))


def _usage(raw: Any, *, quiet: bool = False) -> Usage:
    if not raw:
        if not quiet:
            logger.warning("dashscope response without usage; recording zero tokens")
        return Usage()
    get = raw.get if hasattr(raw, "get") else lambda k, d=None: getattr(raw, k, d)
    input_tokens = int(get("input_tokens", 0) or 0)
    output_tokens = int(get("output_tokens", 0) or 0)
    total = int(get("total_tokens", 0) or (input_tokens + output_tokens))
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total,
                 image_count=int(get("image_count", 0) or 0))


def _result_entry(item: dict) -> dict:
    """One image of a task: its URL, or the code and message of its failure."""
    if item.get("url"):
        return {"url": item["url"]}
    return {"code": item.get("code") or "ImageFailed", "message": item.get("message") or ""}


def _from_v2(exc: v2_errors.DashScopeError) -> UpstreamError:
    if isinstance(exc, v2_errors.APITimeoutError):
        return UpstreamError(code="UpstreamTimeout", status=None, retryable=True,
                             message="DashScope did not answer in time")
    if isinstance(exc, v2_errors.APIConnectionError):
        return UpstreamError(code="UpstreamConnectionError", status=None, retryable=True,
                             message=f"Connection to DashScope failed: {exc.message}")
    status = exc.status_code
    return UpstreamError(code=exc.code or f"HTTP{status}", message=str(exc.message)[:1000],
                         status=status, retryable=status is None or is_retryable_status(status),
                         retry_after=retry_after_seconds(dict(exc.headers or {})),
                         request_id=exc.request_id)


def _malformed(response, exc: Exception | str) -> UpstreamError:
    return UpstreamError(code="UpstreamMalformedResponse", status=HTTPStatus.OK, retryable=True,
                         message=f"DashScope response lacks {exc}",
                         request_id=getattr(response, "request_id", None))
