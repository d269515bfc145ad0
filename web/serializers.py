"""One stable JSON shape per resource, used by every endpoint that returns it."""

from __future__ import annotations

import datetime as dt

from common.jobs.models import Job, JobKind, JobStatus
from common.upstream.failures import http_status_for


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value else None


def job_url(job_id: str) -> str:
    return f"/api/jobs/{job_id}"


def serialize_job(job: Job) -> dict:
    """The job shape of GET /api/jobs/<id>, also returned by 202 answers and failures."""
    # Only a finished job can have a usage row; asking an unfinished one would cost a query.
    usage = job.usage if job.status.is_terminal else None
    hide_result = job.status != JobStatus.SUCCEEDED  # e.g. a result that arrived after cancel
    return {
        "id": job.id,
        "kind": job.kind.value,
        "model": job.model,
        "status": job.status.value,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "deadline_at": _iso(job.deadline_at),
        "attempts": job.attempts,
        "result": None if hide_result else _result(job),
        "error": {"code": job.error_code, "message": job.error_message}
        if job.status == JobStatus.FAILED else None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "image_count": usage.image_count,
        } if usage else None,
        "cost": {"amount": float(usage.cost), "currency": usage.currency} if usage else None,
        "links": {"self": job_url(job.id), "cancel": f"{job_url(job.id)}/cancel"},
    }


def _result(job: Job) -> dict | None:
    if job.kind == JobKind.IMAGE and job.result:
        from web.image_links import render_generation  # image links need the request and the store

        return render_generation(job)
    return job.result


def failure_status(job: Job) -> int:
    """The HTTP status for a job that ended without a result."""
    return 409 if job.status == JobStatus.CANCELED else http_status_for(job.error_code)
