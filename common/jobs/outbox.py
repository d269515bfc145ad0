"""The job row as its own outbox: finding the messages a job is owed that never reached a
worker, and sending them again. Run by the sweeper; running it twice at once only publishes a
duplicate, which the claim (or the poll number) drops."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select, update

from common.infra.db import Database
from common.infra.orm import utcnow
from common.jobs import transitions
from common.jobs.effects import Effects
from common.jobs.models import JobStatus, streamed
from common.jobs.queue import POLL_IMAGE, STORE_IMAGES, Step, first_step
from common.upstream.failures import UpstreamStatus

jobs = transitions.jobs
c = jobs.c


def republish_unsent(*, database: Database, effects: Effects, grace_seconds: float,
                     republish_after_seconds: float, limit: int = 500) -> tuple[int, int]:
    """Publish again the first (or retry) message of every job that should have one in the
    broker but whose message never left, was lost, or died with its worker:

    - queued, never published (the broker was down, or the process died after the commit);
    - queued, published long ago and still unclaimed (the message was lost);
    - running with an expired lease and no publish since (the worker died mid-attempt).

    Returns (published, not published).
    """
    now = utcnow()
    grace = now - dt.timedelta(seconds=grace_seconds)
    stale = now - dt.timedelta(seconds=republish_after_seconds)
    queued, running = c.status == JobStatus.QUEUED, c.status == JobStatus.RUNNING
    with database.connect() as conn:
        due = conn.execute(select(c.id, c.kind, c.request).where(or_(
            and_(queued, c.enqueued_at.is_(None), c.created_at < grace),
            and_(queued, c.enqueued_at < stale),
            and_(running, c.lease_until < grace,
                 or_(c.enqueued_at.is_(None), c.enqueued_at < c.lease_until,
                     c.enqueued_at < stale)),
        )).limit(limit)).all()
    published = [row.id for row in due if effects.follow_up(
        first_step(row.kind, row.id, streamed=streamed(row.request)))]
    if published:
        with database.transaction() as conn:
            transitions.mark_published(conn, published, now=utcnow())
    return len(published), len(due) - len(published)


def resume_owed_actions(*, database: Database, effects: Effects, grace_seconds: float,
                        retry_after_seconds: float, limit: int = 500) -> int:
    """Publish again the polls and image copies whose messages were lost (e.g. with a killed
    worker). Their due time moves on, so a message lost again is retried later, not at every
    sweep. Returns how many were resumed."""
    now = utcnow()
    with database.transaction() as conn:
        rows = conn.execute(
            select(c.id, c.status, c.upstream_status, c.polls)
            .where(c.next_action_at < now - dt.timedelta(seconds=grace_seconds))
            .limit(limit).with_for_update(skip_locked=True)).all()
        if not rows:
            return 0
        owed = {row.id: _owed_step(row) for row in rows}
        if nothing := [job_id for job_id, step in owed.items() if step is None]:
            conn.execute(update(jobs).where(c.id.in_(nothing)).values(next_action_at=None))
        if resumed := [job_id for job_id, step in owed.items() if step is not None]:
            conn.execute(update(jobs).where(c.id.in_(resumed)).values(
                next_action_at=now + dt.timedelta(seconds=retry_after_seconds)))
    return sum(1 for step in owed.values() if step is not None and effects.follow_up(step))


def _owed_step(row) -> Step | None:
    upstream = UpstreamStatus(row.upstream_status or UpstreamStatus.PENDING)
    if not upstream.is_terminal:
        return Step(POLL_IMAGE, row.id, polls=row.polls)
    if upstream == UpstreamStatus.SUCCEEDED and row.status == JobStatus.SUCCEEDED:
        return Step(STORE_IMAGES, row.id)
    return None
