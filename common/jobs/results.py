"""What a succeeded job produced: one type per job kind, built by the worker, stored as the job
row's `result` JSON, read back by the web tier. The stored JSON keeps the shape it always had,
so rows written before these types existed read the same."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.jobs.models import JobKind
from common.upstream.interface import ChatChoice, ChatResult, UpstreamTask


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _unset(value) -> bool:
    return value is None


class FunctionCallResult(Result):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCallResult(Result):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallResult


class ChatCompletionMessage(Result):
    role: str
    content: str
    # What a thinking model reasoned before answering (DashScope's and the OpenAI SDKs'
    # `reasoning_content`); absent for models that do not think.
    reasoning_content: str | None = Field(default=None, exclude_if=_unset)
    # The tools the model calls (finish_reason "tool_calls"); absent when it calls none.
    tool_calls: list[ToolCallResult] | None = Field(default=None, exclude_if=_unset)


class ChatCompletionChoice(Result):
    index: int
    message: ChatCompletionMessage
    finish_reason: str
    # OpenAI's {"content": [{"token", "logprob", "bytes", "top_logprobs"}]}, when asked for.
    logprobs: dict[str, Any] | None = Field(default=None, exclude_if=_unset)


class PromptTokensDetails(Result):
    image_tokens: int  # of prompt_tokens, those of input images


class CompletionUsage(Result):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = Field(default=None, exclude_if=_unset)


class ChatCompletion(Result):
    """A chat job's result: OpenAI's chat.completion object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage

    @classmethod
    def of(cls, *, job_id: str, model: str, answer: ChatResult) -> ChatCompletion:
        usage = answer.usage
        first = ChatChoice(message=answer.message, finish_reason=answer.finish_reason,
                           logprobs=answer.logprobs)
        return cls(
            id=f"chatcmpl-{job_id}", created=int(time.time()), model=model,
            choices=[ChatCompletionChoice(index=i, finish_reason=choice.finish_reason,
                                          message=ChatCompletionMessage(**choice.message),
                                          logprobs=choice.logprobs)
                     for i, choice in enumerate((first, *answer.more_choices))],
            usage=CompletionUsage(
                prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens,
                total_tokens=usage.total_tokens,
                prompt_tokens_details=PromptTokensDetails(image_tokens=usage.image_tokens)
                if usage.image_tokens else None))


class GeneratedImage(Result):
    """One file DashScope generated (an image, a video, a video's poster): its URL (valid for
    24 hours), and our copy once stored."""

    upstream_url: str
    stored: bool = False
    key: str | None = None
    size: int | None = None
    content_type: str | None = None
    sha256: str | None = None
    storage_error: str | None = None

    @property
    def settled(self) -> bool:
        """Copied, or a copy attempted and failed (the client gets DashScope's URL meanwhile)."""
        return self.stored or self.storage_error is not None


class FailedImage(Result):
    """An image of a partly successful task that DashScope could not generate."""

    code: str | None = None
    message: str | None = None


class ImageTaskOutput(Result):
    task_id: str
    task_status: str
    results: list[GeneratedImage | FailedImage]


class ImageUsage(Result):
    image_count: int


class ImageResult(Result):
    """An image job's result: DashScope's task output, its images copied or being copied."""

    output: ImageTaskOutput
    usage: ImageUsage

    @classmethod
    def of(cls, task: UpstreamTask) -> ImageResult:
        results: list[GeneratedImage | FailedImage] = [
            GeneratedImage(upstream_url=item["url"]) if item.get("url")
            else FailedImage(code=item.get("code"), message=item.get("message"))
            for item in task.results]
        return cls(output=ImageTaskOutput(task_id=task.task_id, task_status=task.status,
                                          results=results),
                   usage=ImageUsage(image_count=task.image_count))

    @property
    def images(self) -> list[tuple[int, GeneratedImage]]:
        """The generated images with their index in the task's results."""
        return [(index, entry) for index, entry in enumerate(self.output.results)
                if isinstance(entry, GeneratedImage)]

    @property
    def copies(self) -> list[tuple[int, GeneratedImage]]:
        """What the platform copies into its store, by index (common/jobs/image_copies.py)."""
        return self.images

    @property
    def settled(self) -> bool:
        return all(image.settled for _, image in self.copies)


class EmbeddingSummary(Result):
    """An embedding call's record: what was embedded, not the vectors (the caller got them in
    its answer; the job row is the call's ledger entry, not a vector store)."""

    object: Literal["embedding_summary"] = "embedding_summary"
    count: int
    dimensions: int
    encoding_format: str



class VideoTaskOutput(Result):
    task_id: str
    task_status: str
    video: GeneratedImage
    poster: GeneratedImage | None = None


class VideoUsage(Result):
    video_seconds: int  # DashScope's usage.video_duration: what it bills
    video_count: int


VIDEO_INDEX, POSTER_INDEX = 0, 1


class VideoResult(Result):
    """A video job's result: the MP4 (and its poster frame, if DashScope gave one), copied or
    being copied."""

    output: VideoTaskOutput
    usage: VideoUsage

    @classmethod
    def of(cls, task: UpstreamTask) -> VideoResult:
        poster = GeneratedImage(upstream_url=task.poster_url) if task.poster_url else None
        return cls(output=VideoTaskOutput(task_id=task.task_id, task_status=task.status,
                                          video=GeneratedImage(upstream_url=task.video_url),
                                          poster=poster),
                   usage=VideoUsage(video_seconds=task.video_seconds,
                                    video_count=task.video_count))

    @property
    def copies(self) -> list[tuple[int, GeneratedImage]]:
        copies = [(VIDEO_INDEX, self.output.video)]
        if self.output.poster is not None:
            copies.append((POSTER_INDEX, self.output.poster))
        return copies

    @property
    def settled(self) -> bool:
        return all(copy.settled for _, copy in self.copies)


# Results whose files are copied into the store: the same copying and serving for each.
CopiedResult = ImageResult | VideoResult
JobResult = ChatCompletion | ImageResult | VideoResult | EmbeddingSummary
RESULT_TYPES: dict[JobKind, type[JobResult]] = {JobKind.CHAT: ChatCompletion,
                                                JobKind.IMAGE: ImageResult,
                                                JobKind.IMAGE_EDIT: ImageResult,
                                                JobKind.VIDEO: VideoResult,
                                                JobKind.EMBEDDING: EmbeddingSummary}


def parse_result(kind: JobKind, raw: dict | None) -> JobResult | None:
    """A stored result as its kind's type."""
    return None if raw is None else RESULT_TYPES[kind].model_validate(raw)
