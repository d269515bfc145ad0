"""The job as clients see it: the shape of `GET /api/jobs/<id>` (the `data` of its envelope),
which 202 answers, failures and webhook deliveries send too. One implementation for the web
and the worker, with what it needs: links under PUBLIC_BASE_URL and signed image links."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.infra.settings import Settings
from common.infra.storage import ImageStore, sign_image_path
from common.jobs.models import JobStatus
from common.jobs.results import (
    POSTER_INDEX,
    VIDEO_INDEX,
    ChatCompletion,
    ImageResult,
    ImageUsage,
    VideoResult,
    VideoUsage,
)
from common.jobs.results import GeneratedImage as StoredImage
from common.jobs.views import JobView


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatCompletionData(ChatCompletion):
    """A chat job's result as sent: the chat.completion object and the job it came from."""

    job_id: str


class GeneratedImage(Shape):
    url: str | None = None  # our signed link once stored, DashScope's until then
    stored: bool | None = None
    upstream_url: str | None = None
    size: int | None = None
    content_type: str | None = None
    code: str | None = None  # a failed image of a partial success
    message: str | None = None


class GenerationOutput(Shape):
    task_id: str
    task_status: str
    results: list[GeneratedImage]


class GenerationData(Shape):
    """An image job's result as sent: DashScope's task output with links to our copies."""

    output: GenerationOutput
    usage: ImageUsage | None
    job_id: str


class GeneratedVideo(Shape):
    url: str  # our signed link once stored (HTTP Range supported), DashScope's until then
    stored: bool
    upstream_url: str
    size: int | None = None
    content_type: str | None = None
    sha256: str | None = None


class VideoOutput(Shape):
    task_id: str
    task_status: str
    video: GeneratedVideo
    poster: GeneratedImage | None = None


class VideoData(Shape):
    """A video job's result as sent: the task output with links to our copies."""

    output: VideoOutput
    usage: VideoUsage
    job_id: str


class JobError(Shape):
    code: str | None
    message: str | None


class JobUsageData(Shape):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    image_count: int
    image_tokens: int = Field(default=0, description="Of input_tokens, those of input images "
                              "(vision models)")
    video_seconds: int | None = Field(default=None, description="Seconds of video billed "
                                                                "(video jobs only)")
    video_count: int | None = None
    estimated: bool = Field(default=False, description=(
        "The tokens are the platform's estimate: the job's stream ended (canceled, or its "
        "worker lost) before DashScope reported usage"))


class JobCost(Shape):
    amount: float
    currency: str


class JobLinks(Shape):
    self: str
    cancel: str


class JobData(Shape):
    id: str
    kind: Literal["chat", "image", "image_edit", "video", "embedding"]
    model: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    deadline_at: str
    attempts: int
    result: ChatCompletionData | GenerationData | VideoData | None
    error: JobError | None
    usage: JobUsageData | None
    cost: JobCost | None
    links: JobLinks
    webhook: str | None = Field(default=None, description="Where the job's events are POSTed")
    webhook_events_filter: list[Literal["start", "completed"]] | None = None


def image_path(job_id: str, index: int) -> str:
    """The route of a stored file, image or video (web/api/jobs.py serves it)."""
    return f"/api/jobs/{job_id}/images/{index}"


def media_path(job_id: str, index: int) -> str:
    """The same route under the name that suits a video: /api/jobs/<id>/media/<index>."""
    return f"/api/jobs/{job_id}/media/{index}"


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value else None


class JobShapes:
    """Builds the job's public shape; `signing_key` signs image links (the JWT secret)."""

    def __init__(self, *, settings: Settings, image_store: ImageStore, signing_key: str) -> None:
        self.base = settings.public_base_url
        self.ttl = settings.image_url_ttl_seconds
        self.image_store = image_store
        self.signing_key = signing_key

    def public_url(self, path: str) -> str:
        """The link to `path` a client is given: under PUBLIC_BASE_URL when set, else
        relative; never built from a request's Host header (a client could point it
        anywhere)."""
        return f"{self.base}{path}" if self.base else path

    def job_url(self, job_id: str) -> str:
        return self.public_url(f"/api/jobs/{job_id}")

    def job_data(self, view: JobView) -> JobData:
        """The job shape of GET /api/jobs/<id>, also sent by 202 answers, failures and
        webhooks."""
        usage = view.usage
        url = self.job_url(view.id)
        # Only a job with a webhook shows the webhook fields (the envelope leaves out what was
        # not set), so every other job keeps its shape.
        webhook = {"webhook": view.webhook,
                   "webhook_events_filter": list(view.webhook_events)} if view.webhook else {}
        return JobData(
            id=view.id, kind=view.kind.value, model=view.model, status=view.status.value,
            created_at=_iso(view.created_at), started_at=_iso(view.started_at),
            finished_at=_iso(view.finished_at), deadline_at=_iso(view.deadline_at),
            attempts=view.attempts, result=self.result_data(view),
            error=JobError(code=view.error_code, message=view.error_message)
            if view.status == JobStatus.FAILED else None,
            usage=JobUsageData(input_tokens=usage.input_tokens,
                               output_tokens=usage.output_tokens,
                               total_tokens=usage.total_tokens, image_count=usage.image_count,
                               image_tokens=usage.image_tokens,
                               estimated=usage.estimated,
                               # Shown only where there is video (other jobs keep their shape).
                               **({"video_seconds": usage.video_seconds,
                                   "video_count": usage.video_count}
                                  if usage.video_count else {}))
            if usage else None,
            cost=JobCost(amount=float(usage.cost), currency=usage.currency) if usage else None,
            links=JobLinks(self=url, cancel=f"{url}/cancel"), **webhook)

    def payload(self, view: JobView) -> bytes:
        """The job as the `data` of GET /api/jobs/<id>, as JSON bytes (a webhook's body)."""
        return json.dumps(self.job_data(view).model_dump(mode="json", exclude_unset=True),
                          separators=(",", ":"), ensure_ascii=False).encode()

    def result_data(self, view: JobView
                    ) -> ChatCompletionData | GenerationData | VideoData | None:
        """A succeeded job's result as sent, with the id of the job it came from."""
        if isinstance(view.result, ChatCompletion):
            return self.chat_completion_data(view)
        if isinstance(view.result, ImageResult):
            return self.generation_data(view)
        if isinstance(view.result, VideoResult):
            return self.video_data(view)
        return None

    def chat_completion_data(self, view: JobView) -> ChatCompletionData:
        return ChatCompletionData(**dict(view.result), job_id=view.id)

    def generation_data(self, view: JobView) -> GenerationData:
        """Our stored copies first; DashScope's URL (valid for 24 hours) only while the copy
        is pending."""
        result: ImageResult = view.result
        images = [self._image(view.id, index, entry) if isinstance(entry, StoredImage)
                  else GeneratedImage(code=entry.code, message=entry.message)
                  for index, entry in enumerate(result.output.results)]
        output = result.output
        return GenerationData(job_id=view.id, usage=result.usage, output=GenerationOutput(
            task_id=output.task_id, task_status=output.task_status, results=images))

    def video_data(self, view: JobView) -> VideoData:
        result: VideoResult = view.result
        output = result.output
        video = output.video
        poster = self._image(view.id, POSTER_INDEX, output.poster) if output.poster else None
        return VideoData(job_id=view.id, usage=result.usage, output=VideoOutput(
            task_id=output.task_id, task_status=output.task_status, poster=poster,
            video=GeneratedVideo(
                url=self.signed_image_url(view.id, VIDEO_INDEX, video.key, media_path)
                if video.stored else video.upstream_url,
                stored=video.stored, upstream_url=video.upstream_url, size=video.size,
                content_type=video.content_type, sha256=video.sha256)))

    def signed_image_url(self, job_id: str, index: int, key: str,
                         route: Callable[[str, int], str] = image_path) -> str:
        direct = self.image_store.presigned_url(key, self.ttl)
        if direct:
            return direct
        path = route(job_id, index)
        expires = int(time.time()) + self.ttl
        signature = sign_image_path(self.signing_key, path, expires)
        return self.public_url(f"{path}?expires={expires}&signature={signature}")

    def _image(self, job_id: str, index: int, image: StoredImage) -> GeneratedImage:
        return GeneratedImage(
            url=self.signed_image_url(job_id, index, image.key) if image.stored
            else image.upstream_url,
            stored=image.stored, upstream_url=image.upstream_url, size=image.size,
            content_type=image.content_type)
