"""The job lifecycle: every transition of a job is a use case here.

Each use case runs in one transaction and describes what it changed as `Change`s; after the
commit their side effects run from one place (effects.py). Views, tasks and the sweeper call
these use cases and never sequence side effects themselves. The statements behind the
transitions, and the guards that make at-least-once delivery safe, are in transitions.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TypeVar

import redis
from celery import Celery
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from common.billing.budgets import Budgets
from common.billing.pricing import Usage
from common.billing.token_limits import TokenLimits
from common.errors import Conflict, NotFound
from common.infra import metrics
from common.infra.db import Database
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.jobs import queries, transitions
from common.jobs.effects import Change, Cost, Effects
from common.jobs.models import ACTIVE_STATUSES, JobKind, JobStatus, streamed
from common.jobs.queue import (
    CANCEL_IMAGE,
    POLL_IMAGE,
    STORE_IMAGES,
    Publisher,
    Step,
    first_step,
)
from common.jobs.results import (
    ChatCompletion,
    CopiedResult,
    EmbeddingSummary,
    ImageResult,
    VideoResult,
)
from common.jobs.streams import JobStreams, job_streams
from common.jobs.views import JobUsage, JobView
from common.upstream.failures import (
    ATTEMPTS_EXHAUSTED,
    DEADLINE_EXCEEDED,
    RetryPolicy,
    UpstreamError,
    UpstreamStatus,
    code_label,
)
from common.webhooks.deliveries import WebhookDeliveries
from common.webhooks.targets import WebhookTarget

logger = logging.getLogger(__name__)
T = TypeVar("T")
jobs = transitions.jobs


class Claim(BaseModel):
    """A job a worker holds for one attempt (or one poll), as the claim read it."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: int
    kind: JobKind
    model: str
    request: dict
    path: str
    correlation_id: str | None
    attempt: int
    deadline_at: dt.datetime
    created_at: dt.datetime
    started_at: dt.datetime | None
    upstream_task_id: str | None
    upstream_status: str | None
    polls: int
    compute_cost: Decimal
    webhook: str | None = None
    webhook_events: str | None = None

    @classmethod
    def of(cls, row) -> Claim:
        # The row's own values, typed by their columns: nothing to validate.
        values = row._asdict()
        values["attempt"] = values.pop("attempts")
        return cls.model_construct(**values)

    @property
    def streams(self) -> bool:
        """The client asked for the job's deltas as they come (common/jobs/streams.py)."""
        return streamed(self.request)

    @property
    def first_task(self) -> str:
        """The task that runs the job again from the start (a retry of an attempt)."""
        return first_step(self.kind, self.id, streamed=self.streams).task

    @property
    def webhook_target(self) -> WebhookTarget | None:
        return WebhookTarget.of(self.webhook, self.webhook_events)

    def seconds_left(self, now: dt.datetime | None = None) -> float:
        return (self.deadline_at - (now or utcnow())).total_seconds()

    def view(self, status: JobStatus, at: dt.datetime, **outcome) -> JobView:
        """The job as it is after a transition this claim made."""
        return JobView(id=self.id, user_id=self.user_id, kind=self.kind, model=self.model,
                       status=status, created_at=self.created_at, started_at=self.started_at,
                       finished_at=at, deadline_at=self.deadline_at, attempts=self.attempt,
                       webhook=self.webhook,
                       webhook_events=tuple(self.webhook_events.split(","))
                       if self.webhook_events else (), **outcome)


class Billed(BaseModel):
    """An upstream result to record: DashScope bills it, so it is recorded exactly once."""

    result: ChatCompletion | ImageResult | VideoResult | EmbeddingSummary
    usage: Usage
    cost: Decimal  # DashScope's price for `usage`
    currency: str
    upstream_request_id: str | None = None
    compute_cost: Decimal = Decimal(0)  # the Function Compute invocation that produced it


@dataclasses.dataclass(frozen=True)
class Stop:
    """Why the platform ends an unfinished job."""

    status: JobStatus
    code: str | None = None
    message: str | None = None


CANCELED_BY_OWNER = Stop(JobStatus.CANCELED)
PAST_DEADLINE = Stop(JobStatus.FAILED, DEADLINE_EXCEEDED,
                     "The job did not finish before its deadline")


def attempts_exhausted(max_attempts: int) -> Stop:
    return Stop(JobStatus.FAILED, ATTEMPTS_EXHAUSTED, f"Gave up after {max_attempts} attempts")


class JobLifecycle:
    def __init__(self, *, database: Database, effects: Effects, policy: RetryPolicy,
                 streams: JobStreams | None = None,
                 webhooks: WebhookDeliveries | None = None,
                 budgets: Budgets | None = None) -> None:
        self.database = database
        self.effects = effects
        self.policy = policy
        self.streams = streams
        self.webhooks = webhooks
        self.budgets = budgets

    @classmethod
    def of(cls, *, settings: Settings, database: Database, redis_client: redis.Redis,
           celery: Celery) -> JobLifecycle:
        """The lifecycle a web or worker process runs, from its own resources."""
        streams = job_streams(settings, redis_client)
        publisher = Publisher(celery)
        webhooks = WebhookDeliveries.of(settings=settings, database=database,
                                        publisher=publisher)
        # Budgets settle and release with the transitions that end jobs (in their transaction).
        budgets = Budgets(settings)
        tokens = TokenLimits(redis_client, settings.token_limit_window_seconds)
        return cls(database=database, policy=RetryPolicy.from_settings(settings),
                   effects=Effects(redis_client=redis_client, publisher=publisher,
                                   in_transaction=[webhooks.in_transaction,
                                                   budgets.in_transaction],
                                   after_commit=[streams.after_commit, webhooks.after_commit,
                                                 budgets.token_correction(tokens)]),
                   streams=streams, webhooks=webhooks, budgets=budgets)

    def commit(self, work: Callable[[Connection], tuple[T, list[Change]]], *,
               unsent: list[Step] | None = None) -> T:
        """The unit of work of every use case: run `work` in one transaction, then the side
        effects of the changes it reports. Steps that could not be published are added to
        `unsent` for callers that keep an outbox of their own."""
        with self.database.transaction() as conn:
            value, changes = work(conn)
            for change in changes:
                self.effects.in_transaction(conn, change)
        for change in changes:
            failed = self.effects.after_commit(change)
            if unsent is not None:
                unsent.extend(failed)
        return value

    # --- taking work ------------------------------------------------------------------------

    def claim(self, job_id: str, *, lease_seconds: float) -> Claim | None:
        """Take the job for one attempt, or None when another delivery holds it or it is
        finished. A job past its deadline or its attempt budget is ended here instead of run
        (which also stops a message that kills its worker every time from looping forever),
        and its waiters are woken like those of any other ending."""
        def work(conn):
            now = utcnow()
            if not transitions.take_lease(conn, job_id, now=now,
                                          lease_until=now + _seconds(lease_seconds)):
                return None, []
            claim = Claim.of(transitions.claimed(conn, job_id))
            if claim.deadline_at < now:
                return None, self._stop(conn, [claim], PAST_DEADLINE, now)
            if claim.attempt > self.policy.max_attempts:
                return None, self._stop(conn, [claim],
                                        attempts_exhausted(self.policy.max_attempts), now)
            if claim.attempt == 1 and claim.webhook:  # the job starts: a `start` webhook
                return claim, [Change(claim.id, claim.kind, at=now, started=True,
                                      webhook=claim.webhook_target)]
            return claim, []

        claim = self.commit(work)
        if claim is not None and claim.attempt == 1:
            metrics.JOB_QUEUE_WAIT.labels(claim.kind.value).observe(
                max(0.0, (utcnow() - claim.created_at).total_seconds()))
        return claim

    def begin_poll(self, job_id: str, *, expected_polls: int, lease_seconds: float
                   ) -> Claim | None:
        """Claim one poll of the job's upstream task; None for a duplicate message or a task
        already finished. The poll's lease is its owed action: the sweeper resumes polling
        if this message dies."""
        def work(conn):
            if not transitions.take_poll(conn, job_id, expected_polls=expected_polls,
                                         lease_until=utcnow() + _seconds(lease_seconds)):
                return None, []
            return Claim.of(transitions.claimed(conn, job_id)), []

        return self.commit(work)

    # --- outcomes ---------------------------------------------------------------------------

    def finish(self, claim: Claim, billed: Billed, *, upstream_status: str | None = None,
               store_images: bool = False) -> JobStatus | None:
        """Record a billed result: the job succeeds and its usage row is written, in one
        transaction. Returns the job's final status, or None if this result was recorded
        already (a redelivery). A job that ended meanwhile (canceled, expired) keeps its state
        and hides the result, but the usage row is written all the same: DashScope bills the
        work, and our records must match its bill."""
        def work(conn):
            now = utcnow()
            succeeded = transitions.succeed(
                conn, claim.id, now=now, result=billed.result.model_dump(mode="json"),
                add_compute_cost=billed.compute_cost, upstream_status=upstream_status,
                next_action_at=now if store_images else None)
            status = JobStatus.SUCCEEDED if succeeded else transitions.status_of(conn, claim.id)
            total = _insert_usage(conn, claim, billed, now)
            change = Change(claim.id, claim.kind, at=now, created_at=claim.created_at,
                            cost=Cost(claim.model, total, billed.currency,
                                      billed.usage.total_tokens),
                            streamed=claim.streams, webhook=claim.webhook_target)
            if succeeded:
                change = dataclasses.replace(
                    change, ended=JobStatus.SUCCEEDED,
                    view=claim.view(JobStatus.SUCCEEDED, now, result=billed.result,
                                    usage=JobUsage(**dataclasses.asdict(billed.usage),
                                                   cost=total, currency=billed.currency)),
                    follow_ups=(Step(STORE_IMAGES, claim.id),) if store_images else ())
            return status, [change]

        try:
            return self.commit(work)
        except IntegrityError:
            return None  # UNIQUE(usage_records.job_id): another delivery recorded it

    def fail(self, claim: Claim, *, code: str, message: str,
             add_compute_cost: Decimal = Decimal(0), upstream_status: str | None = None,
             billed: Billed | None = None) -> bool:
        """Fail an unfinished job with an error code and message; False if it had ended.
        `billed`: what DashScope billed for the failed work (a stream that broke off after
        reporting usage), written as the job's usage row in the same transaction."""
        def work(conn):
            now = utcnow()
            if not transitions.fail(conn, claim.id, now=now, code=code, message=message,
                                    add_compute_cost=add_compute_cost,
                                    upstream_status=upstream_status):
                return False, []
            cost, usage = None, None
            if billed is not None:
                total = _insert_usage(conn, claim, billed, now)
                cost = Cost(claim.model, total, billed.currency, billed.usage.total_tokens)
                usage = JobUsage(**dataclasses.asdict(billed.usage), cost=total,
                                 currency=billed.currency)
            view = claim.view(JobStatus.FAILED, now, error_code=code[:64],
                              error_message=message[:1024], usage=usage)
            return True, [Change(claim.id, claim.kind, ended=JobStatus.FAILED, at=now,
                                 created_at=claim.created_at, view=view, cost=cost,
                                 streamed=claim.streams, webhook=claim.webhook_target)]

        try:
            return self.commit(work)
        except IntegrityError:
            return False  # UNIQUE(usage_records.job_id): another delivery recorded it

    def upstream_failed(self, claim: Claim, error: UpstreamError, *, retry_task: str) -> bool:
        """The one decision for an attempt the upstream failed, whatever the job kind: retry
        after the policy's delay (True), or fail the job with the upstream's code (False)."""
        delay = self.policy.next_attempt_in(error, claim.attempt, claim.seconds_left())
        if delay is None:
            logger.warning("upstream failed attempt=%s code=%s status=%s message=%s",
                           claim.attempt, error.code, error.status, error.message)
            self.fail(claim, code=error.code, message=error.message,
                      add_compute_cost=error.compute_cost)
            return False
        logger.warning("upstream retryable attempt=%s code=%s retry_in=%.2f", claim.attempt,
                       error.code, delay)
        metrics.JOB_RETRIES.labels(claim.kind.value, code_label(error.code)).inc()
        self.retry_later(claim, Step(retry_task, claim.id, delay),
                         add_compute_cost=error.compute_cost)
        return True

    def retry_later(self, claim: Claim, step: Step, *,
                    add_compute_cost: Decimal = Decimal(0)) -> bool:
        """Release the lease until `step` is due; False if the job ended meanwhile."""
        def work(conn):
            now = utcnow()
            # A second early, so a retry that runs on a host with a slightly slow clock
            # still claims.
            until = now + _seconds(max(0.0, step.countdown - 1.0))
            if not transitions.release_lease(conn, claim.id, now=now, until=until,
                                             add_compute_cost=add_compute_cost):
                return False, []
            return True, [Change(claim.id, claim.kind, follow_ups=(step,))]

        return self.commit(work)

    # --- upstream tasks ---------------------------------------------------------------------

    def record_upstream_task(self, claim: Claim, *, task_id: str, first_poll_in: float,
                             add_compute_cost: Decimal = Decimal(0)) -> None:
        """The upstream task exists: commit its id at once, then poll it. A job that ended
        while it was being submitted gets its task canceled."""
        def work(conn):
            now = utcnow()
            row = transitions.attach_upstream_task(
                conn, claim.id, now=now, task_id=task_id,
                first_poll_at=now + _seconds(first_poll_in), add_compute_cost=add_compute_cost)
            steps = [Step(POLL_IMAGE, claim.id, first_poll_in, row.polls)]
            if row.status.is_terminal:
                steps.append(Step(CANCEL_IMAGE, claim.id))
            return None, [Change(claim.id, claim.kind, follow_ups=tuple(steps))]

        self.commit(work)

    def poll_again(self, poll: Claim, *, in_seconds: float, upstream_status: str | None = None,
                   add_compute_cost: Decimal = Decimal(0)) -> None:
        """The task is not finished: the next poll is owed in `in_seconds`."""
        def work(conn):
            transitions.owe_action(conn, poll.id, due=utcnow() + _seconds(in_seconds),
                                   add_compute_cost=add_compute_cost,
                                   upstream_status=upstream_status)
            step = Step(POLL_IMAGE, poll.id, in_seconds, poll.polls)
            return None, [Change(poll.id, poll.kind, follow_ups=(step,))]

        self.commit(work)

    def end_canceled_upstream(self, poll: Claim, *,
                              add_compute_cost: Decimal = Decimal(0)) -> bool:
        """DashScope canceled the task (at our request or its own): the job ends canceled."""
        def work(conn):
            now = utcnow()
            if not transitions.end_canceled_upstream(conn, poll.id, now=now,
                                                     add_compute_cost=add_compute_cost):
                return False, []
            return True, [Change(poll.id, poll.kind, ended=JobStatus.CANCELED, at=now,
                                 created_at=poll.created_at,
                                 view=poll.view(JobStatus.CANCELED, now),
                                 webhook=poll.webhook_target)]

        return self.commit(work)

    def record_copies(self, job_id: str, kind: JobKind, result: CopiedResult, *,
                      retry_in: float | None) -> None:
        """Where a succeeded job's images are stored now; copy again in `retry_in` seconds,
        or (None) the copies are settled and waiting requests get our links."""
        def work(conn):
            now = utcnow()
            due = None if retry_in is None else now + _seconds(retry_in)
            if not transitions.replace_result(conn, job_id, now=now,
                                              result=result.model_dump(mode="json"), due=due):
                return None, []
            steps = () if retry_in is None else (Step(STORE_IMAGES, job_id, retry_in),)
            return None, [Change(job_id, kind, announce=retry_in is None,
                                 follow_ups=steps)]

        self.commit(work)

    def owe_nothing(self, job_id: str) -> None:
        """The job is owed no poll or copy any more."""
        with self.database.transaction() as conn:
            transitions.owe_action(conn, job_id, due=None)

    def defer(self, step: Step) -> None:
        """Ask again later, changing nothing (e.g. the model has no capacity yet)."""
        self.effects.follow_up(step)

    # --- ending jobs from outside: the owner, the deadline ----------------------------------

    def cancel(self, job_id: str, owner: queries.Owner) -> JobView:
        """Cancel a queued or running job; a finished one is a Conflict."""
        def work(conn):
            target = conn.execute(_STOPPABLE.where(jobs.c.id == job_id).with_for_update()
                                  ).one_or_none() if queries.looks_like_uuid(job_id) else None
            if target is None or not owner.may_see(target.user_id):
                raise NotFound("Job not found", code="job_not_found")
            changes = self._stop(conn, [target], CANCELED_BY_OWNER, utcnow())
            view = queries.find(conn, job_id)
            if not changes:
                raise Conflict(f"Job is already {view.status.value}", code="job_not_cancelable")
            return view, [dataclasses.replace(changes[0], view=view)]

        return self.commit(work)

    def expire_overdue(self, *, limit: int = 500) -> int:
        """Fail every unfinished job past its deadline; returns how many."""
        def work(conn):
            now = utcnow()
            rows = conn.execute(
                _STOPPABLE.where(jobs.c.status.in_(ACTIVE_STATUSES), jobs.c.deadline_at < now)
                .limit(limit).with_for_update(skip_locked=True)).all()
            changes = self._stop(conn, rows, PAST_DEADLINE, now) if rows else []
            return len(changes), changes

        return self.commit(work)

    def _stop(self, conn: Connection, targets: Sequence, reason: Stop,
              now: dt.datetime) -> list[Change]:
        """End unfinished jobs for `reason`. The owner's cancel, the deadline and the attempt
        budget all end a job here, so each has the same effects: waiters are woken, an
        upstream task still running is asked to stop (its polls go on, to record what
        DashScope bills), and the ending is counted."""
        moved = transitions.stop(conn, [t.id for t in targets], now=now, status=reason.status,
                                 code=reason.code, message=reason.message)
        if not moved:
            return []
        # Every target moved: each was locked (FOR UPDATE, or the claim's own lease) and
        # unfinished when this transaction read it.
        return [Change(t.id, t.kind, ended=reason.status, created_at=t.created_at, at=now,
                       follow_ups=(Step(CANCEL_IMAGE, t.id),) if _upstream_running(t) else (),
                       interrupts=True, webhook=WebhookTarget.of(t.webhook, t.webhook_events))
                for t in targets]


def _insert_usage(conn: Connection, claim: Claim, billed: Billed, now: dt.datetime) -> Decimal:
    """The job's one usage row (a second raises IntegrityError); returns its total cost."""
    compute_cost = claim.compute_cost + billed.compute_cost
    total = billed.cost + compute_cost
    usage = billed.usage
    transitions.insert_usage(conn, {
        "job_id": claim.id, "user_id": claim.user_id, "kind": claim.kind,
        "model": claim.model, "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens, "total_tokens": usage.total_tokens,
        "image_count": usage.image_count, "image_tokens": usage.image_tokens,
        "video_seconds": usage.video_seconds, "video_count": usage.video_count,
        "estimated": usage.estimated, "cost": total,
        "compute_cost": compute_cost, "currency": billed.currency, "path": claim.path,
        "upstream_request_id": billed.upstream_request_id, "created_at": now})
    return total


_STOPPABLE = select(jobs.c.id, jobs.c.user_id, jobs.c.kind, jobs.c.created_at,
                    jobs.c.upstream_task_id, jobs.c.upstream_status, jobs.c.webhook,
                    jobs.c.webhook_events)


def _upstream_running(target) -> bool:
    return bool(target.upstream_task_id) and not UpstreamStatus(
        target.upstream_status or UpstreamStatus.PENDING).is_terminal


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)
