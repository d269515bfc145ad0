"""Wan async-task jobs (text-to-image, image edits, videos): submit once, poll within
DashScope's limits, record the outcome. What differs between the kinds is the job's
`TaskSpec` (task_specs.py); this module never looks at the kind itself.

Every step is a short task; none waits for DashScope. The lifecycle publishes the step each
transition owes (the next poll, the copy of the images or video: image_copies.py):

    submit ──► poll ──► poll ──► … ──► (terminal) record outcome ──► store files

- A job's upstream task id is committed the moment it exists; a job that has one is never
  submitted again (redelivery, retries, the sweeper).
- Polls of every kind share one account-wide budget of task queries (`RateBudget`), and their
  interval stretches with the number of tasks in flight so the planned rate fits the budget.
- Submissions wait for the model's submit rate and concurrent-task limit (`InflightTasks`).
"""

from __future__ import annotations

import logging
import random

import redis

from common.billing.pricing import cost_of
from common.infra import metrics
from common.infra.db import Database
from common.infra.log import bind_log_context
from common.infra.settings import Settings
from common.jobs import queries
from common.jobs.input_images import InputImages
from common.jobs.lifecycle import Billed, Claim, JobLifecycle
from common.jobs.queue import POLL_IMAGE, SUBMIT_IMAGE, Step
from common.jobs.task_specs import TaskSpec, spec_of
from common.upstream.account_limits import InflightTasks, RateBudget
from common.upstream.backends import backend_for
from common.upstream.failures import TASK_FAILED, TASK_UNKNOWN, UpstreamError, UpstreamStatus
from common.upstream.interface import AIBackend, UpstreamTask

logger = logging.getLogger(__name__)

POLL_LEASE_SECONDS = 60  # a poll's claim; the sweeper resumes polling after this
BUDGET_SAFETY_WINDOW = 1.1  # "N per 1.1 s" keeps any 1-second window under N despite jitter
FAIR_SHARE_UTILISATION = 0.8


class TaskJobs:
    def __init__(self, *, lifecycle: JobLifecycle, database: Database,
                 backends: dict[str, AIBackend], redis_client: redis.Redis,
                 settings: Settings, input_images: InputImages) -> None:
        self.lifecycle = lifecycle
        self.database = database
        self.backends = backends
        self.settings = settings
        self.input_images = input_images
        self.inflight = InflightTasks(redis_client)
        self.query_budget = RateBudget(redis_client, "bailian:wanx:task-queries",
                                       settings.task_query_budget, BUDGET_SAFETY_WINDOW)
        self.submit_rates = {
            model: RateBudget(redis_client, f"bailian:wanx:submits:{model}",
                              limits.submit_qps, BUDGET_SAFETY_WINDOW)
            for model, limits in settings.task_models.items()}

    # --- submit --------------------------------------------------------------------------

    def submit(self, job_id: str) -> None:
        """Submit the job's upstream task once, when the model has room; then poll it."""
        with self.database.connect() as conn:
            job = queries.working_row(conn, job_id, "model", "status", "kind")
        if job is None or job.status.is_terminal:
            return
        spec = spec_of(job.kind)
        wait = self._capacity_wait(job.model, job_id, spec)
        if wait:
            self.lifecycle.defer(Step(SUBMIT_IMAGE, job_id, wait))  # not our turn yet
            return
        claim = self.lifecycle.claim(job_id, lease_seconds=self.settings.job_lease_seconds)
        if claim is None:
            self.inflight.release(job.model, job_id)
            return
        bind_log_context(job_id=claim.id, user_id=claim.user_id, request_id=claim.correlation_id)
        if claim.upstream_task_id:  # an earlier delivery submitted it: never submit twice
            self.lifecycle.defer(Step(POLL_IMAGE, job_id, 0, claim.polls))
            return
        try:
            inputs = self.input_images.resolve(claim)
            task = backend_for(self.backends, claim.path).submit_task(spec.upstream_request(
                model=claim.model, request=claim.request, inputs=inputs,
                correlation_id=claim.correlation_id, user_id=claim.user_id))
        except UpstreamError as error:
            self.inflight.release(claim.model, job_id)
            self.lifecycle.upstream_failed(claim, error, retry_task=SUBMIT_IMAGE)
            return
        logger.info("wanx task submitted task_id=%s attempt=%s path=%s kind=%s", task.task_id,
                    claim.attempt, claim.path, claim.kind.value)
        self.lifecycle.record_upstream_task(claim, task_id=task.task_id,
                                            first_poll_in=self._interval(spec, 0),
                                            add_compute_cost=task.compute_cost)

    def _capacity_wait(self, model: str, job_id: str, spec: TaskSpec) -> float:
        limits = spec.models_of(self.settings).get(model)
        if limits is None:
            return 0.0
        if not self.inflight.acquire(model, job_id, limit=limits.concurrency,
                                     ttl_seconds=self._slot_ttl(self._interval(spec, 0))):
            return random.uniform(1.0, 5.0)  # a running task must finish first
        wait = self.submit_rates[model].acquire()
        if wait:
            self.inflight.release(model, job_id)
            return wait + random.uniform(0, 0.2)
        return 0.0

    # --- poll ----------------------------------------------------------------------------

    def poll(self, job_id: str, expected_polls: int) -> None:
        """One query of the upstream task; then the next poll, or the recorded outcome."""
        poll = self.lifecycle.begin_poll(job_id, expected_polls=expected_polls,
                                         lease_seconds=POLL_LEASE_SECONDS)
        if poll is None:
            return  # a duplicate message, or the task already finished
        bind_log_context(job_id=poll.id, user_id=poll.user_id, request_id=poll.correlation_id)
        # The budget is taken last, right before the query: DashScope counts queries when
        # they arrive, so nothing slow (like the claim's commit) may sit between the grant and
        # the request, or two windows' grants arrive within one second.
        wait = self.query_budget.acquire()
        if wait:
            metrics.WANX_BUDGET_WAITS.inc()
            # Over budget: come back at a random point of the next round of polls rather than
            # the instant a slot frees, so denied polls do not stampede the same slot. The
            # poll's lease stays as it is: the sweeper resumes the poll if this message dies.
            spread = self.inflight.count(self.settings.task_models) / \
                self.settings.task_query_budget
            self.lifecycle.defer(Step(POLL_IMAGE, job_id, wait + random.uniform(
                0, max(0.1, spread)), poll.polls))
            return
        metrics.WANX_TASK_QUERIES.inc()
        try:
            task = backend_for(self.backends, poll.path).fetch_task(poll.upstream_task_id,
                                                                      poll.model)
        except UpstreamError as error:
            self._poll_failed(poll, error)
            return
        spec = spec_of(poll.kind)
        if not task.finished:
            interval = self._interval(spec, poll.polls)
            self.lifecycle.poll_again(poll, in_seconds=interval, upstream_status=task.status,
                                      add_compute_cost=task.compute_cost)
            self.inflight.refresh(poll.model, poll.id, self._slot_ttl(interval))
            return
        self.inflight.release(poll.model, poll.id)
        self._record_outcome(poll, task, spec)

    def _poll_failed(self, poll: Claim, error: UpstreamError) -> None:
        if error.retryable:
            interval = max(self._interval(spec_of(poll.kind), poll.polls),
                           error.retry_after or 0)
            logger.warning("wanx poll retryable code=%s retry_in=%.1f", error.code, interval)
            self.lifecycle.poll_again(poll, in_seconds=interval,
                                      add_compute_cost=error.compute_cost)
            return
        # e.g. the API key was revoked: no poll will ever succeed.
        logger.error("wanx poll failed code=%s message=%s", error.code, error.message)
        self.inflight.release(poll.model, poll.id)
        self.lifecycle.fail(poll, code=error.code, message=error.message,
                            add_compute_cost=error.compute_cost,
                            upstream_status=UpstreamStatus.UNREACHABLE)

    def _record_outcome(self, poll: Claim, task: UpstreamTask, spec: TaskSpec) -> None:
        logger.info("wanx task finished task_id=%s status=%s images=%s video_seconds=%s "
                    "polls=%s", task.task_id, task.status, task.image_count,
                    task.video_seconds, poll.polls)
        status = UpstreamStatus(task.status)
        outcome = spec.outcome(task) if status == UpstreamStatus.SUCCEEDED else None
        if status == UpstreamStatus.SUCCEEDED and outcome is None:
            self.lifecycle.fail(poll, code="UpstreamMalformedResponse", upstream_status=status,
                                message="The task succeeded without its output",
                                add_compute_cost=task.compute_cost)
        elif status == UpstreamStatus.SUCCEEDED:
            metrics.AI_IMAGES.labels(metrics.model_label(poll.model)).inc(task.image_count)
            result, usage = outcome
            self.lifecycle.finish(
                poll, Billed(result=result, usage=usage,
                             cost=cost_of(self.settings.prices, poll.model, usage),
                             currency=self.settings.price_currency,
                             compute_cost=task.compute_cost),
                upstream_status=status, store_images=bool(result.copies))
        elif status == UpstreamStatus.CANCELED:
            self.lifecycle.end_canceled_upstream(poll, add_compute_cost=task.compute_cost)
        elif status == UpstreamStatus.UNKNOWN:
            self.lifecycle.fail(poll, code=TASK_UNKNOWN, upstream_status=status,
                                message="DashScope no longer knows this task (expired or "
                                        "never existed)", add_compute_cost=task.compute_cost)
        else:
            self.lifecycle.fail(poll, code=task.code or TASK_FAILED, upstream_status=status,
                                message=task.message or "The upstream task failed",
                                add_compute_cost=task.compute_cost)

    # --- cancel --------------------------------------------------------------------------

    def cancel_upstream(self, job_id: str) -> None:
        """Ask DashScope to cancel the job's task; only a PENDING task can be. Either way the
        polls go on, so what DashScope ends up billing is recorded."""
        with self.database.connect() as conn:
            job = queries.working_row(conn, job_id, "upstream_task_id", "upstream_status",
                                      "path", "model")
        if job is None or not job.upstream_task_id \
                or UpstreamStatus(job.upstream_status or "PENDING").is_terminal:
            return
        try:
            canceled = backend_for(self.backends, job.path).cancel_task(job.upstream_task_id,
                                                                          job.model)
        except UpstreamError as error:
            logger.warning("wanx cancel failed task_id=%s code=%s", job.upstream_task_id,
                           error.code)
            return
        logger.info("wanx cancel task_id=%s canceled=%s", job.upstream_task_id, canceled)

    # --- pacing --------------------------------------------------------------------------

    def _interval(self, spec: TaskSpec, polls: int) -> float:
        """The kind's backoff (images 1, 2, 5, 10 s; videos 5, 10, 15 s by default),
        stretched to each task's fair share of the query budget when many tasks are in
        flight."""
        base = poll_delay(spec.backoff_of(self.settings), polls)
        in_flight = self.inflight.count(self.settings.task_models)
        fair_share = in_flight / (self.settings.task_query_budget * FAIR_SHARE_UTILISATION)
        interval = min(max(base, fair_share), self.settings.image_poll_max_interval)
        # +-10 %: tasks submitted together drift apart instead of polling in lockstep.
        return interval * random.uniform(0.9, 1.1)

    @staticmethod
    def _slot_ttl(interval: float) -> float:
        return 3 * interval + 60


def poll_delay(backoff: list[float], polls: int) -> float:
    """The delay before poll number `polls + 1` (the schedule's last delay repeats). A task
    that finishes is seen by the next poll, so it is never later than this delay."""
    return backoff[min(polls, len(backoff) - 1)]
