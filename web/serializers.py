"""The response model of each resource, built from the domain's types: one place per shape,
used by every endpoint that returns it."""

from __future__ import annotations

import datetime as dt

from common.accounts.models import User
from common.jobs.models import JobStatus
from common.jobs.results import ChatCompletion, ImageResult
from common.jobs.results import GeneratedImage as StoredImage
from common.jobs.views import JobView
from common.upstream.failures import http_status_for
from web.image_links import public_url, signed_image_url
from web.response_models import (
    ChatCompletionData,
    GeneratedImage,
    GenerationData,
    GenerationOutput,
    JobCost,
    JobData,
    JobError,
    JobLinks,
    JobUsageData,
    UserData,
)


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value else None


def job_url(job_id: str) -> str:
    return public_url(f"/api/jobs/{job_id}")


def job_data(view: JobView) -> JobData:
    """The job shape of GET /api/jobs/<id>, also sent by 202 answers and failures."""
    usage = view.usage
    return JobData(
        id=view.id, kind=view.kind.value, model=view.model, status=view.status.value,
        created_at=_iso(view.created_at), started_at=_iso(view.started_at),
        finished_at=_iso(view.finished_at), deadline_at=_iso(view.deadline_at),
        attempts=view.attempts, result=result_data(view),
        error=JobError(code=view.error_code, message=view.error_message)
        if view.status == JobStatus.FAILED else None,
        usage=JobUsageData(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                           total_tokens=usage.total_tokens, image_count=usage.image_count,
                           estimated=usage.estimated)
        if usage else None,
        cost=JobCost(amount=float(usage.cost), currency=usage.currency) if usage else None,
        links=JobLinks(self=job_url(view.id), cancel=f"{job_url(view.id)}/cancel"))


def result_data(view: JobView) -> ChatCompletionData | GenerationData | None:
    """A succeeded job's result as sent, with the id of the job it came from."""
    if isinstance(view.result, ChatCompletion):
        return chat_completion_data(view)
    if isinstance(view.result, ImageResult):
        return generation_data(view)
    return None


def chat_completion_data(view: JobView) -> ChatCompletionData:
    return ChatCompletionData(**dict(view.result), job_id=view.id)


def generation_data(view: JobView) -> GenerationData:
    """Our stored copies first; DashScope's URL (valid for 24 hours) only while the copy is
    pending."""
    result: ImageResult = view.result
    images = [_image(view.id, index, entry) if isinstance(entry, StoredImage)
              else GeneratedImage(code=entry.code, message=entry.message)
              for index, entry in enumerate(result.output.results)]
    output = result.output
    return GenerationData(job_id=view.id, usage=result.usage, output=GenerationOutput(
        task_id=output.task_id, task_status=output.task_status, results=images))


def _image(job_id: str, index: int, image: StoredImage) -> GeneratedImage:
    return GeneratedImage(
        url=signed_image_url(job_id, index, image.key) if image.stored else image.upstream_url,
        stored=image.stored, upstream_url=image.upstream_url, size=image.size,
        content_type=image.content_type)


def failure_status(view: JobView) -> int:
    """The HTTP status for a job that ended without a result."""
    return 409 if view.status == JobStatus.CANCELED else http_status_for(view.error_code)


def user_data(user: User) -> UserData:
    return UserData(id=user.id, username=user.username, email=user.email, role=user.role,
                    active=user.is_active)
