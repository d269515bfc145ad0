"""Wake-ups: a finished job is announced on Redis pub/sub so waiting requests read its row.

Best effort by design: the row is the truth, and waiters re-read it on a timer, so a lost
message only costs latency.
"""

from __future__ import annotations

import logging

import redis

logger = logging.getLogger(__name__)

JOB_EVENTS_CHANNEL = "bailian:job-finished"


def announce_job_finished(client: redis.Redis, job_id: str) -> None:
    try:
        client.publish(JOB_EVENTS_CHANNEL, job_id)
    except redis.RedisError as exc:
        logger.warning("wake-up not published job_id=%s error=%s", job_id, exc)
