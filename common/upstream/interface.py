"""What the job services ask of an AI backend, and what it answers (failures: failures.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from common.billing.pricing import Usage
from common.upstream.failures import UpstreamStatus


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]  # OpenAI's shapes: content parts, tool_calls, tool messages
    parameters: dict[str, Any]
    correlation_id: str | None = None
    user_id: int | None = None


@dataclasses.dataclass(frozen=True)
class ChatChoice:
    """One more answer of a request for several (n > 1)."""

    message: dict[str, Any]
    finish_reason: str
    logprobs: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class ChatResult:
    # {"role": "assistant", "content": ..., ["reasoning_content"], ["tool_calls": OpenAI's]}
    message: dict[str, Any]
    finish_reason: str  # "tool_calls" when the model calls tools
    usage: Usage
    upstream_request_id: str | None = None
    compute_cost: Decimal = Decimal(0)  # Function Compute invocation, when that path ran
    stopped: bool = False  # a stream the caller stopped reading: what arrived until then
    logprobs: dict[str, Any] | None = None  # OpenAI's {"content": [...]}, when asked for
    more_choices: tuple[ChatChoice, ...] = ()  # n > 1: the answers after the first


@dataclasses.dataclass(frozen=True)
class ChatDelta:
    """One chunk of a streamed answer: only what is new in it, and the cumulative usage
    DashScope reported with it."""

    content: str
    reasoning_content: str
    finish_reason: str | None  # None until the last chunk
    usage: Usage
    # Tool-call fragments in OpenAI's chunk shape ({"index", ["id", "type"], "function":
    # {["name"], "arguments"}}): the first of a call names it, the rest extend its arguments.
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class TaskRequest:
    """One async Wan task to start: text-to-image, an image edit or a video. The SDK routes
    it to its endpoint by model name (dashscope-protocol-2.md sections 6.1 and 7.1)."""

    model: str
    prompt: str | None  # image-to-video may go without one
    negative_prompt: str | None
    parameters: dict[str, Any]  # size, style, n, seed, prompt_extend, watermark, duration...
    # Input fields beside the prompt: function, base_image_url, mask_image_url, img_url,
    # first_frame_url, last_frame_url (https or oss:// URLs).
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    video: bool = False  # a video synthesis task (else an image synthesis one)
    correlation_id: str | None = None
    user_id: int | None = None


@dataclasses.dataclass(frozen=True)
class UpstreamTask:
    """A snapshot of an upstream async task (image or video)."""

    task_id: str
    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED, UNKNOWN
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # url | code+message
    image_count: int = 0  # what DashScope bills: generated images only
    video_url: str | None = None
    poster_url: str | None = None  # a cover frame, when DashScope gives one
    video_seconds: int = 0  # usage.video_duration (or usage.duration): what DashScope bills
    video_count: int = 0
    code: str | None = None
    message: str | None = None
    compute_cost: Decimal = Decimal(0)

    @property
    def finished(self) -> bool:
        return UpstreamStatus(self.status).is_terminal


@dataclasses.dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    dimension: int | None  # None: the model's fixed size (v1/v2 take no dimension)
    correlation_id: str | None = None


@dataclasses.dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]  # in the order of the request's texts
    usage: Usage
    upstream_request_id: str | None = None


class AIBackend(Protocol):
    """What the job services need from an AI provider."""

    name: str

    def chat(self, request: ChatRequest) -> ChatResult: ...

    def chat_stream(self, request: ChatRequest,
                    on_delta: Callable[[ChatDelta], bool]) -> ChatResult:
        """The answer as a stream: `on_delta` gets each chunk and returns False to stop
        reading (the result is then what arrived, `stopped`). Raises UpstreamError for a
        stream that fails, before its first chunk or after it."""
        ...

    def submit_task(self, request: TaskRequest) -> UpstreamTask:
        """Start an upstream async task; returns its first snapshot (with its task id)."""
        ...

    def fetch_task(self, task_id: str, model: str | None = None) -> UpstreamTask: ...

    def cancel_task(self, task_id: str, model: str | None = None) -> bool:
        """True when the task was canceled; False when it can no longer be (not PENDING)."""
        ...

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Embed each text (DashScope only: Function Compute has no embedding function)."""
        ...
