"""The side effects of a job's transitions, all run from here.

A use case of the lifecycle describes what its transaction changed as `Change`s. Inside the
transaction, `in_transaction` hooks may write rows that must commit with it (a webhook
delivery owed by a terminal state, say). After the commit, `after_commit` wakes waiting
requests, publishes the steps that must follow, counts the metrics, and calls the
after-commit hooks (a stream's end, say). Nothing here may undo the commit: a wake-up is a
hint, a step that cannot be published is recovered by the sweeper from the row, a failing
hook is logged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable
from decimal import Decimal

import redis
from sqlalchemy import Connection

from common.infra import metrics
from common.jobs.events import announce
from common.jobs.models import JobKind, JobStatus
from common.jobs.queue import Publisher, Step
from common.jobs.views import JobView
from common.webhooks.targets import WebhookTarget

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cost:
    """A usage row this change wrote."""

    model: str
    amount: Decimal
    currency: str
    tokens: int  # its total tokens


@dataclasses.dataclass(frozen=True)
class Change:
    """One committed change of one job, and what follows from it."""

    job_id: str
    kind: JobKind
    ended: JobStatus | None = None  # the terminal state reached by this change
    created_at: dt.datetime | None = None  # with `ended`: for the job-duration metric
    at: dt.datetime | None = None
    view: JobView | None = None  # what waiters may answer with (None: they read the row)
    announce: bool = False  # wake waiters although nothing ended (e.g. images stored)
    follow_ups: tuple[Step, ...] = ()
    cost: Cost | None = None
    submitted: bool = False
    # Whether the job streams its deltas (common/jobs/streams.py); None: not known here.
    streamed: bool | None = None
    # Ended by someone other than its worker (a cancel, the deadline): a running attempt
    # should stop.
    interrupts: bool = False
    # The job's first attempt began (a `start` webhook event).
    started: bool = False
    # The job's webhook, carried from the row the transition read (None: it has none).
    webhook: WebhookTarget | None = None

    @functools.cached_property
    def view_json(self) -> str | None:
        """The view as JSON, encoded once for the waiters' wake-up and the stream's end."""
        return self.view.model_dump_json() if self.view is not None else None

    @property
    def wakes_waiters(self) -> bool:
        return self.ended is not None or self.announce


InTransactionHook = Callable[[Connection, Change], None]
AfterCommitHook = Callable[[Change], None]


class Effects:
    def __init__(self, *, redis_client: redis.Redis, publisher: Publisher,
                 in_transaction: Iterable[InTransactionHook] = (),
                 after_commit: Iterable[AfterCommitHook] = ()) -> None:
        self.redis = redis_client
        self.publisher = publisher
        self.in_transaction_hooks = list(in_transaction)
        self.after_commit_hooks = list(after_commit)

    def in_transaction(self, conn: Connection, change: Change) -> None:
        """Run inside the change's transaction; raising rolls the transition back."""
        for hook in self.in_transaction_hooks:
            hook(conn, change)

    def after_commit(self, change: Change) -> list[Step]:
        """Run once the change is committed. Returns the steps that could not be published."""
        if change.wakes_waiters:
            announce(self.redis, change.job_id, change.view_json)
        unsent = [step for step in change.follow_ups if not self.publisher.publish(step)]
        kind = change.kind.value
        if change.submitted:
            metrics.JOBS_SUBMITTED.labels(kind).inc()
        if change.ended is not None and change.created_at is not None:
            metrics.record_job_finished(kind, change.ended.value, change.created_at,
                                        change.at or change.created_at)
        if change.cost is not None:
            metrics.USAGE_COST.labels(metrics.model_label(change.cost.model),
                                      change.cost.currency).inc(float(change.cost.amount))
        for hook in self.after_commit_hooks:
            try:
                hook(change)
            except Exception:
                logger.exception("after-commit hook failed job_id=%s", change.job_id)
        return unsent

    def follow_up(self, step: Step) -> bool:
        """Publish a step that changes nothing in the row (e.g. "not your turn yet, ask again
        later"); False when the broker is unreachable."""
        return self.publisher.publish(step)
