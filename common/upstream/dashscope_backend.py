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
from dashscope import (
    Generation,
    ImageSynthesis,
    MultiModalConversation,
    TextEmbedding,
    VideoSynthesis,
)
from dashscope.api_entities.dashscope_response import MultiModalConversationResponse
from dashscope.client.base_api import BaseApi
from dashscope.v2 import errors as v2_errors

from common.billing.pricing import Usage
from common.infra.metrics import AI_TOKENS, model_label
from common.upstream import dashscope_messages
from common.upstream.failures import UpstreamError, is_retryable_status, retry_after_seconds
from common.upstream.file_upload import OSS_RESOLVE_HEADER, FileUploader
from common.upstream.http_session import pooled_session
from common.upstream.instrumentation import upstream_call
from common.upstream.interface import (
    ChatChoice,
    ChatDelta,
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
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
        self.uploads = FileUploader(api_key=api_key, base_url=self.base_url, timeout=timeout,
                                    session=self.http)

    def chat(self, request: ChatRequest) -> ChatResult:
        with upstream_call(request.model, "chat", billed=True):
            fn, kwargs = self._chat_call(request)
            response = self._call(fn, result_format="message", **kwargs)
            try:
                choices = [_choice(choice) for choice in response.output.choices]
                first = choices[0]
            except (AttributeError, IndexError, KeyError, TypeError) as exc:
                raise _malformed(response, exc) from exc
        usage = _usage(response.usage)
        _count_tokens(request.model, usage)
        return ChatResult(message=first.message, finish_reason=first.finish_reason, usage=usage,
                          upstream_request_id=response.request_id, logprobs=first.logprobs,
                          more_choices=tuple(choices[1:]))

    def chat_stream(self, request: ChatRequest,
                    on_delta: Callable[[ChatDelta], bool]) -> ChatResult:
        content: list[str] = []
        reasoning: list[str] = []
        calls = dashscope_messages.ToolCallAssembler()
        usage, finish_reason, request_id, stopped = Usage(), "stop", None, False
        with upstream_call(request.model, "chat", billed=True):
            fn, kwargs = self._chat_call(request)
            chunks = self._call(fn, result_format="message", stream=True,
                                incremental_output=True, **kwargs)
            try:
                for response in chunks:
                    _raise_for_status(response)
                    request_id = response.request_id or request_id
                    delta = _delta(response)
                    usage = delta.usage
                    content.append(delta.content)
                    reasoning.append(delta.reasoning_content)
                    calls.add(delta.tool_calls)
                    if delta.finish_reason is not None:
                        finish_reason = delta.finish_reason
                    if not on_delta(delta):
                        stopped = True
                        break
            except requests.exceptions.RequestException as exc:
                raise _transport_error(exc, self.timeout) from exc
            finally:
                chunks.close()  # stops the upstream read (the SDK's response goes with it)
        _count_tokens(request.model, usage)
        message = {"role": "assistant", "content": "".join(content)}
        if any(reasoning):
            message["reasoning_content"] = "".join(reasoning)
        if calls.calls:
            message["tool_calls"] = calls.result()
        return ChatResult(message=message, finish_reason=finish_reason, usage=usage,
                          upstream_request_id=request_id, stopped=stopped)

    def _chat_call(self, request: ChatRequest) -> tuple[Callable, dict[str, Any]]:
        """The SDK call for the request's messages: text generation, or the multimodal
        endpoint for messages with images (their `data:` URLs uploaded first)."""
        headers = self._headers(request.correlation_id)
        kwargs = {"model": request.model, "headers": headers, **request.parameters}
        if not dashscope_messages.has_images(request.messages):
            return Generation.call, {
                **kwargs, "messages": dashscope_messages.text_generation(request.messages)}
        uploaded: dict[str, str] = {}
        messages = dashscope_messages.multimodal(
            request.messages, lambda url: self._image(url, request.model, uploaded))
        if uploaded:
            headers[OSS_RESOLVE_HEADER] = "enable"
        # The multimodal endpoint through the SDK's BaseApi, not MultiModalConversation.call:
        # that one uploads any text item naming an existing local path (a client's text!)
        # from this machine (dashscope-protocol-2.md section 3.4).
        return _multimodal_call, {**kwargs, "input": {"messages": messages}}

    def _image(self, url: str, model: str, uploaded: dict[str, str]) -> str:
        """The URL DashScope gets for an image: an https URL as it is; a data: URL's bytes
        uploaded once per call (its oss:// URL)."""
        if not dashscope_messages.is_data_url(url):
            return url
        if url not in uploaded:
            data, media_type, filename = dashscope_messages.data_url_content(url)
            uploaded[url] = self.uploads.upload(data, model=model, filename=filename,
                                                content_type=media_type)
        return uploaded[url]

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

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        with upstream_call(request.model, "embedding", billed=True):
            extra = {"dimension": request.dimension} if request.dimension is not None else {}
            response = self._call(TextEmbedding.call, model=request.model, input=request.texts,
                                  headers=self._headers(request.correlation_id), **extra)
            try:
                # `output` is a plain dict here (dashscope-protocol-2.md section 4.1); rows
                # carry text_index, which puts them back in the order of the texts.
                rows = sorted(response.output["embeddings"], key=lambda r: r["text_index"])
                vectors = [list(row["embedding"]) for row in rows]
            except (AttributeError, IndexError, KeyError, TypeError) as exc:
                raise _malformed(response, exc) from exc
            if len(vectors) != len(request.texts):
                raise _malformed(response, f"{len(request.texts)} embeddings")
        tokens = int((response.usage or {}).get("total_tokens", 0) or 0)
        AI_TOKENS.labels(model_label(request.model), "input").inc(tokens)
        return EmbeddingResult(vectors=vectors, usage=Usage(input_tokens=tokens,
                                                            total_tokens=tokens),
                               upstream_request_id=response.request_id)

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


def _multimodal_call(**kwargs):
    """The multimodal endpoint (`aigc/multimodal-generation/generation`), its answers parsed
    as MultiModalConversation.call parses them."""
    response = BaseApi.call(task_group="aigc", task=MultiModalConversation.task,
                            function=MultiModalConversation.function, **kwargs)
    if kwargs.get("stream"):
        return _Closing(MultiModalConversationResponse.from_api_response(r) for r in response)
    return MultiModalConversationResponse.from_api_response(response)


class _Closing:
    """A generator of parsed chunks that closes the SDK's generator under it."""

    def __init__(self, chunks) -> None:
        self.chunks = chunks

    def __iter__(self):
        return self.chunks

    def close(self) -> None:
        self.chunks.close()


def _text(content: Any) -> str:
    """A message's text: a string (text generation) or a list of items (multimodal)."""
    if isinstance(content, list):
        return "".join(item.get("text", "") for item in content if isinstance(item, dict))
    if content is None:
        return ""
    if not isinstance(content, str):
        raise TypeError("content")
    return content


def _choice(choice) -> ChatChoice:
    """One answer of a non-streamed response, in OpenAI's message shape. DashScope once
    answered tool calls with finish_reason "stop" (dashscope-protocol-2.md section 2.2)."""
    message = choice.message
    answer: dict[str, Any] = {"role": message.role, "content": _text(message.content)}
    reasoning = message.get("reasoning_content") if hasattr(message, "get") else None
    if reasoning:
        answer["reasoning_content"] = reasoning
    calls = dashscope_messages.tool_calls(message.get("tool_calls")
                                          if hasattr(message, "get") else None)
    finish_reason = choice.finish_reason
    if calls:
        answer["tool_calls"] = calls
        finish_reason = "tool_calls" if finish_reason in (None, "stop", "null") else finish_reason
    logprobs = choice.get("logprobs") if hasattr(choice, "get") else None
    return ChatChoice(message=answer, finish_reason=finish_reason, logprobs=logprobs or None)


def _delta(response) -> ChatDelta:
    """One incremental stream chunk (dashscope-protocol-2.md sections 1, 2.3 and 3.3): the
    new text (a string, or the multimodal list), the new reasoning, tool-call fragments,
    `finish_reason` ("null" until the last chunk) and the cumulative usage."""
    try:
        choice = response.output.choices[0]
        message = choice.message
        content = _text(message.content)
        getter = message.get if hasattr(message, "get") else lambda _k: None
        reasoning = getter("reasoning_content") or ""
        calls = dashscope_messages.tool_call_deltas(getter("tool_calls"))
        finish_reason = choice.finish_reason
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise _malformed(response, exc) from exc
    return ChatDelta(content=content, reasoning_content=reasoning,
                     finish_reason=None if finish_reason in (None, "null") else finish_reason,
                     usage=_usage(response.usage, quiet=True), tool_calls=calls)


def _usage(raw: Any, *, quiet: bool = False) -> Usage:
    if not raw:
        if not quiet:
            logger.warning("dashscope response without usage; recording zero tokens")
        return Usage()
    get = raw.get if hasattr(raw, "get") else lambda k, d=None: getattr(raw, k, d)
    input_tokens = int(get("input_tokens", 0) or 0)
    output_tokens = int(get("output_tokens", 0) or 0)
    total = int(get("total_tokens", 0) or (input_tokens + output_tokens))
    # Vision: `image_tokens` (inside input_tokens), or newer models' input_tokens_details.
    details = get("input_tokens_details", None) or {}
    image_tokens = int(get("image_tokens", 0) or details.get("image_tokens", 0) or 0)
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total,
                 image_count=int(get("image_count", 0) or 0), image_tokens=image_tokens)


def _count_tokens(model: str, usage: Usage) -> None:
    AI_TOKENS.labels(model_label(model), "input").inc(usage.input_tokens)
    AI_TOKENS.labels(model_label(model), "output").inc(usage.output_tokens)


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
