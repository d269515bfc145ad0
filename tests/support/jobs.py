"""Helpers for tests that follow jobs through the platform."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from common.billing.models import UsageRecord
from common.jobs.models import Job


class Directive(str):
    """A prompt suffix scripting the emulator; `.id` finds its requests in the emulator log."""

    id: str


def directive(**knobs) -> Directive:
    knobs.setdefault("id", uuid.uuid4().hex[:10])
    text = Directive("[[emulator: " + "; ".join(f"{k}={v}" for k, v in knobs.items()) + "]]")
    text.id = knobs["id"]
    return text


def wait_for_job(database, job_id: str, timeout: float = 60, status=None) -> Job:
    """Poll the job row until it is terminal (or has `status`)."""
    deadline = time.monotonic() + timeout
    while True:
        with database.session() as session:
            job = session.get(Job, job_id)
            done = job.status == status if status else job.status.is_terminal
        if done:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status} after {timeout}s"
        time.sleep(0.2)


def usage_rows(database, job_id: str) -> list[UsageRecord]:
    with database.session() as session:
        return list(session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id)))


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, message or "condition never became true"
        time.sleep(interval)
