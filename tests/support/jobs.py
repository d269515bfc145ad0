"""Helpers for tests that follow jobs through the platform."""

from __future__ import annotations

import datetime as dt
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


def assert_seen_within_one_poll(job, task: dict) -> float:
    """The emulator's record of `job`'s upstream task shows the platform saw it finish with
    the first query after it ended, at most one poll interval later, and ended the job right
    after the last query (one whose answer was lost in transport is followed by another).
    Returns how long after the task ended that first query came."""
    queries = sorted(task["queries"])
    catching = next(q for q in queries if q >= task["ended"])
    before = [q for q in queries if q < task["ended"]]
    interval = catching - before[-1] if before else catching - task["submitted"]
    assert catching - task["ended"] <= interval
    finished_at = job.finished_at.replace(tzinfo=dt.UTC).timestamp()
    after = [round(q - task["ended"], 2) for q in queries if q >= task["ended"]]
    assert finished_at - queries[-1] < 2.0, \
        f"job {job.id} finished {finished_at - queries[-1]:.1f}s after its last query; " \
        f"queries after the task ended (s): {after}"
    return catching - task["ended"]


def assert_all_finish_within_the_budget(emulator, database, ids: list[str], budget: float,
                                        timeout: float) -> tuple[list[Job], dict[str, dict]]:
    """Every job succeeds, no second saw more task queries than `budget`, and each task was
    seen within one poll interval of finishing. Returns the jobs and the emulator's tasks."""
    finished = [wait_for_job(database, job_id, timeout=timeout) for job_id in ids]
    assert all(job.status.value == "succeeded" for job in finished)
    stats = emulator.stats()
    assert stats["max_task_queries_per_second"] <= budget, stats["task_queries_per_second"]
    tasks = emulator.tasks()
    gaps = [assert_seen_within_one_poll(job, tasks[job.upstream_task_id]) for job in finished]
    assert max(gaps) > 0  # the check looked at real gaps
    return finished, tasks
