"""The response model of each resource, built from the domain's types: one place per shape,
used by every endpoint that returns it. The job's shapes are built in common/jobs/shapes.py
(the worker's webhooks send the same object); these are the web's entry points to them."""

from __future__ import annotations

from common.accounts.models import User
from common.jobs.models import JobStatus
from common.jobs.views import JobView
from common.upstream.failures import http_status_for
from web.context import services
from web.response_models import (
    ChatCompletionData,
    GenerationData,
    JobData,
    UserData,
    VideoData,
)


def job_url(job_id: str) -> str:
    return services().shapes.job_url(job_id)


def job_data(view: JobView) -> JobData:
    """The job shape of GET /api/jobs/<id>, also sent by 202 answers and failures."""
    return services().shapes.job_data(view)


def result_data(view: JobView) -> ChatCompletionData | GenerationData | VideoData | None:
    return services().shapes.result_data(view)


def chat_completion_data(view: JobView) -> ChatCompletionData:
    return services().shapes.chat_completion_data(view)


def generation_data(view: JobView) -> GenerationData:
    return services().shapes.generation_data(view)


def video_data(view: JobView) -> VideoData:
    return services().shapes.video_data(view)


def failure_status(view: JobView) -> int:
    """The HTTP status for a job that ended without a result."""
    return 409 if view.status == JobStatus.CANCELED else http_status_for(view.error_code)


def user_data(user: User) -> UserData:
    return UserData(id=user.id, username=user.username, email=user.email, role=user.role,
                    active=user.is_active)
