"""A job as its owner may see it: built from the job row, or carried by the job's wake-up so a
waiting request can answer without reading the row again."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from common.jobs.models import JobKind, JobStatus
from common.jobs.results import (
    ChatCompletion,
    CopiedResult,
    EmbeddingSummary,
    ImageResult,
    VideoResult,
)


class JobUsage(BaseModel):
    """The job's usage record: what DashScope reported, and what it cost."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    image_count: int = 0
    image_tokens: int = 0  # of input_tokens, those of input images
    video_seconds: int = 0
    video_count: int = 0
    estimated: bool = False
    cost: Decimal
    currency: str


class JobView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    user_id: int
    kind: JobKind
    model: str
    status: JobStatus
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    deadline_at: dt.datetime
    attempts: int = 0
    # Shown only once the job succeeded: a result that arrived after a cancel stays hidden
    # (its usage is still recorded, because DashScope bills it).
    result: ChatCompletion | ImageResult | VideoResult | EmbeddingSummary | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage: JobUsage | None = None
    webhook: str | None = None  # where the job's events are POSTed
    webhook_events: tuple[str, ...] = ()

    @property
    def settled(self) -> bool:
        """Nothing more is coming that a waiting client should wait for: the job is finished,
        and a succeeded image or video job has made a first attempt at copying each file (so
        the client gets our links, or DashScope's while a failed copy is retried)."""
        if not self.status.is_terminal:
            return False
        return not isinstance(self.result, CopiedResult) or self.result.settled
