"""Wake-ups: a change a waiting request may care about is announced on Redis pub/sub, with the
job as its owner may see it when the announcer has that at hand, so the waiter can answer
without reading the row.

Best effort by design: the row is the truth, and waiters re-read it on a timer, so a lost
message only costs latency. A message is `<job id>` or `<job id> <JobView as JSON>`; a
listener reads past the id only when somebody waits for that job.
"""

from __future__ import annotations

import logging

import redis

from common.jobs.views import JobView

logger = logging.getLogger(__name__)

JOB_EVENTS_CHANNEL = "bailian:job-events"


def announce(client: redis.Redis, job_id: str, view_json: str | None = None) -> None:
    """Wake the job's waiters, with the job (a JobView's JSON) when the announcer has it."""
    message = job_id if view_json is None else f"{job_id} {view_json}"
    try:
        client.publish(JOB_EVENTS_CHANNEL, message)
    except redis.RedisError as exc:
        logger.warning("wake-up not published job_id=%s error=%s", job_id, exc)


def split(message: str) -> tuple[str, str | None]:
    """The job id of a wake-up, and its view (still JSON) if it carries one."""
    job_id, _, view = message.partition(" ")
    return job_id, view or None


def parse_view(raw: str) -> JobView:
    return JobView.model_validate_json(raw)
