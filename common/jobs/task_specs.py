"""What differs between the kinds of async-task job (text-to-image, image edit, video): one
`TaskSpec` each. The submit/poll/copy machinery (tasks.py, image_copies.py) asks the job's spec
and never tests the kind itself, so a new kind of task is a new spec, not a new code path.

A spec says:
- which settings table holds its models (account limits, parameter rules: wanx_models.py);
- how a job's stored request becomes the upstream task (`TaskRequest`);
- how a finished task becomes the job's result and its billed usage;
- how often to poll (videos take minutes, images seconds);
- what may be copied into the store (content types and size cap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from common.billing.pricing import Usage
from common.infra.settings import Settings
from common.jobs.models import JobKind
from common.jobs.results import CopiedResult, ImageResult, VideoResult
from common.upstream.interface import TaskRequest, UpstreamTask
from common.upstream.wanx_models import TaskModel


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    kind: JobKind
    video: bool  # a video synthesis task (its result is one MP4 and maybe a poster)
    models_of: Callable[[Settings], dict[str, TaskModel]]
    backoff_of: Callable[[Settings], list[float]]
    deadline_of: Callable[[Settings], int]

    def upstream_request(self, *, model: str, request: dict, inputs: dict[str, str],
                         correlation_id: str | None, user_id: int | None) -> TaskRequest:
        """The task to start: the stored request, with its input images as URLs DashScope can
        read (`inputs`: resolved by input_images.py)."""
        return TaskRequest(model=model, prompt=request.get("prompt"),
                           negative_prompt=request.get("negative_prompt"),
                           parameters=request.get("parameters", {}),
                           inputs={**request.get("fields", {}), **inputs}, video=self.video,
                           correlation_id=correlation_id, user_id=user_id)

    def outcome(self, task: UpstreamTask) -> tuple[CopiedResult, Usage] | None:
        """A succeeded task's result and what DashScope bills for it; None when the task says
        it succeeded but carries no output to show (a video without its URL)."""
        if self.video:
            if not task.video_url:
                return None
            return VideoResult.of(task), Usage(video_seconds=task.video_seconds,
                                               video_count=task.video_count)
        return ImageResult.of(task), Usage(image_count=task.image_count)

    def max_bytes(self, settings: Settings, index: int) -> int:
        """The largest copy accepted: the MP4 may be large, images and posters are not."""
        return settings.video_max_bytes if self.video and index == 0 else \
            settings.image_max_bytes

    def content_type_allowed(self, index: int, content_type: str) -> bool:
        if self.video and index == 0:
            return content_type in ("video/mp4", "application/octet-stream")
        return content_type.startswith("image/")


IMAGE = TaskSpec(kind=JobKind.IMAGE, video=False, models_of=lambda s: s.image_models,
                 backoff_of=lambda s: s.image_poll_backoff,
                 deadline_of=lambda s: s.image_job_deadline_seconds)
IMAGE_EDIT = dataclasses.replace(IMAGE, kind=JobKind.IMAGE_EDIT,
                                 models_of=lambda s: s.image_edit_models)
VIDEO = TaskSpec(kind=JobKind.VIDEO, video=True, models_of=lambda s: s.video_models,
                 backoff_of=lambda s: s.video_poll_backoff,
                 deadline_of=lambda s: s.video_job_deadline_seconds)
SPECS: dict[JobKind, TaskSpec] = {spec.kind: spec for spec in (IMAGE, IMAGE_EDIT, VIDEO)}


def spec_of(kind: JobKind) -> TaskSpec:
    return SPECS[kind]
