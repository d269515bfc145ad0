"""Wanx image jobs: submit once, poll within DashScope's limits, record, store, cancel.

Every step is a short task; none waits for DashScope. Each method returns the `Step` its task
should schedule next (or None), and the task only turns that into a message:

    submit ──► poll ──► poll ──► … ──► (terminal) record outcome ──► store images

- A job's upstream task id is committed the moment it exists; a job that has one is never
  submitted again (redelivery, retries, the sweeper).
- Polls share one account-wide budget of task queries (`SlidingWindow`), and their interval
  stretches with the number of tasks in flight so the planned rate fits the budget.
- Submissions wait for the model's submit rate and concurrent-task limit (`InflightTasks`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import random
from urllib.parse import urlsplit

import redis
import requests

from common.billing.pricing import Usage, cost_of
from common.infra import metrics
from common.infra.db import Database
from common.infra.log import bind_log_context
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.infra.storage import ImageStore, image_key
from common.jobs import lifecycle as jobs
from common.jobs.chat import backend_for, retry_delay
from common.jobs.events import announce_job_finished
from common.jobs.models import Job, JobKind, JobStatus
from common.upstream.account_limits import InflightTasks, RateBudget
from common.upstream.failures import UpstreamError, UpstreamStatus, code_label
from common.upstream.interface import AIBackend, ImageRequest, ImageTask

logger = logging.getLogger(__name__)

SUBMIT, POLL, STORE = "submit", "poll", "store"
POLL_LEASE_SECONDS = 60  # a poll's claim; the sweeper resumes polling after this
BUDGET_SAFETY_WINDOW = 1.1  # "N per 1.1 s" keeps any 1-second window under N despite jitter
FAIR_SHARE_UTILISATION = 0.8
UNKNOWN_TASK = "UpstreamTaskUnknown"


@dataclasses.dataclass(frozen=True)
class Step:
    """The task to run next for a job, and when."""

    action: str  # SUBMIT | POLL | STORE
    job_id: str
    countdown: float = 0.0
    polls: int = 0  # for POLL: the poll number this message may claim


class ImageJobs:
    def __init__(self, *, database: Database, backends: dict[str, AIBackend],
                 redis_client: redis.Redis, settings: Settings, store: ImageStore) -> None:
        self.database = database
        self.backends = backends
        self.redis = redis_client
        self.settings = settings
        self.store = store
        self.inflight = InflightTasks(redis_client)
        self.query_budget = RateBudget(redis_client, "bailian:wanx:task-queries",
                                          settings.task_query_budget, BUDGET_SAFETY_WINDOW)
        self.submit_rates = {
            model: RateBudget(redis_client, f"bailian:wanx:submits:{model}",
                                 limits.submit_qps, BUDGET_SAFETY_WINDOW)
            for model, limits in settings.image_models.items()}

    # --- submit --------------------------------------------------------------------------

    def submit(self, job_id: str) -> Step | None:
        """Submit the job's upstream task once, when the model has room; then poll."""
        with self.database.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.status.is_terminal:
                return None
            model = job.model
        wait = self._capacity_wait(model, job_id)
        if wait:
            return Step(SUBMIT, job_id, wait)  # our turn has not come: ask again later
        with self.database.session() as session:
            claim = jobs.claim(session=session, job_id=job_id,
                               lease_seconds=self.settings.job_lease_seconds,
                               max_attempts=self.settings.job_max_attempts)
        if claim is None:
            self.inflight.release(model, job_id)
            return None
        job = claim.job
        bind_log_context(job_id=job.id, user_id=job.user_id, request_id=job.correlation_id)
        if job.upstream_task_id:  # an earlier delivery submitted it: never submit twice
            return Step(POLL, job.id, 0, job.polls)
        try:
            task = backend_for(self.backends, job.path).submit_image(ImageRequest(
                model=job.model, prompt=job.request["prompt"],
                negative_prompt=job.request.get("negative_prompt"),
                parameters=job.request.get("parameters", {}),
                correlation_id=job.correlation_id, user_id=job.user_id))
        except UpstreamError as error:
            self.inflight.release(model, job_id)
            return self._submit_failed(job, claim.attempt, error)
        interval = self._interval(0)
        with self.database.session() as session:
            job = jobs.record_upstream_task(session=session, job_id=job_id, task_id=task.task_id,
                                            first_poll_at=utcnow() + _seconds(interval),
                                            compute_cost=task.compute_cost)
        logger.info("wanx task submitted task_id=%s attempt=%s path=%s", task.task_id,
                    claim.attempt, job.path)
        if job.status == JobStatus.CANCELED:
            self.cancel_upstream(job_id)  # canceled while we were submitting
        return Step(POLL, job_id, interval, job.polls)

    def _capacity_wait(self, model: str, job_id: str) -> float:
        limits = self.settings.image_models.get(model)
        if limits is None:
            return 0.0
        if not self.inflight.acquire(model, job_id, limit=limits.concurrency,
                                     ttl_seconds=self._slot_ttl(self._interval(0))):
            return random.uniform(1.0, 5.0)  # a running task must finish first
        wait = self.submit_rates[model].acquire()
        if wait:
            self.inflight.release(model, job_id)
            return wait + random.uniform(0, 0.2)
        return 0.0

    def _submit_failed(self, job: Job, attempt: int, error: UpstreamError) -> Step | None:
        delay = retry_delay(error, attempt, self.settings)
        time_left = (job.deadline_at - utcnow()).total_seconds()
        if error.retryable and attempt < self.settings.job_max_attempts and delay < time_left:
            logger.warning("wanx submit retryable attempt=%s code=%s retry_in=%.2f",
                           attempt, error.code, delay)
            metrics.JOB_RETRIES.labels(JobKind.IMAGE.value, code_label(error.code)).inc()
            with self.database.session() as session:
                if jobs.schedule_retry(session=session, job_id=job.id, delay_seconds=delay,
                                       compute_cost=error.compute_cost):
                    return Step(SUBMIT, job.id, delay)
            return None
        logger.warning("wanx submit failed attempt=%s code=%s message=%s", attempt, error.code,
                       error.message)
        with self.database.session() as session:
            jobs.fail(session=session, job_id=job.id, code=error.code, message=error.message,
                      compute_cost=error.compute_cost)
        announce_job_finished(self.redis, job.id)
        return None

    # --- poll ----------------------------------------------------------------------------

    def poll(self, job_id: str, expected_polls: int) -> Step | None:
        """One query of the upstream task; then the next poll, or the recorded outcome."""
        with self.database.session() as session:
            job = jobs.begin_poll(session=session, job_id=job_id, expected_polls=expected_polls,
                                  lease_seconds=POLL_LEASE_SECONDS)
        if job is None:
            return None  # a duplicate message, or the task already finished
        bind_log_context(job_id=job.id, user_id=job.user_id, request_id=job.correlation_id)
        # The budget is taken last, right before the query: DashScope counts queries when
        # they arrive, so nothing slow (like the claim's commit) may sit between the grant and
        # the request, or two windows' grants arrive within one second.
        wait = self.query_budget.acquire()
        if wait:
            metrics.WANX_BUDGET_WAITS.inc()
            # Over budget: come back at a random point of the next round of polls rather than
            # the instant a slot frees, so denied polls do not stampede the same slot. The
            # claim's lease stays as it is: the sweeper resumes the poll if this message dies.
            spread = self.inflight.count(self.settings.image_models) / \
                self.settings.task_query_budget
            return Step(POLL, job.id, wait + random.uniform(0, max(0.1, spread)), job.polls)
        metrics.WANX_TASK_QUERIES.inc()
        try:
            task = backend_for(self.backends, job.path).fetch_image(job.upstream_task_id,
                                                                     job.model)
        except UpstreamError as error:
            return self._poll_failed(job, error)
        if not task.finished:
            interval = self._interval(job.polls)
            with self.database.session() as session:
                jobs.schedule_action(session=session, job_id=job.id,
                                     due=utcnow() + _seconds(interval),
                                     upstream_status=task.status,
                                     compute_cost=task.compute_cost)
            self.inflight.refresh(job.model, job.id, self._slot_ttl(interval))
            return Step(POLL, job.id, interval, job.polls)
        self.inflight.release(job.model, job.id)
        step = self._record_outcome(job, task)
        announce_job_finished(self.redis, job.id)
        return step

    def _poll_failed(self, job: Job, error: UpstreamError) -> Step | None:
        if error.retryable:
            interval = max(self._interval(job.polls), error.retry_after or 0)
            logger.warning("wanx poll retryable code=%s retry_in=%.1f", error.code, interval)
            with self.database.session() as session:
                jobs.schedule_action(session=session, job_id=job.id,
                                     due=utcnow() + _seconds(interval),
                                     compute_cost=error.compute_cost)
            return Step(POLL, job.id, interval, job.polls)
        # e.g. the API key was revoked: no poll will ever succeed.
        logger.error("wanx poll failed code=%s message=%s", error.code, error.message)
        self.inflight.release(job.model, job.id)
        with self.database.session() as session:
            jobs.fail(session=session, job_id=job.id, code=error.code, message=error.message,
                      compute_cost=error.compute_cost, upstream_status="UNREACHABLE",
                      next_action_at=None)
        announce_job_finished(self.redis, job.id)
        return None

    def _record_outcome(self, job: Job, task: ImageTask) -> Step | None:
        logger.info("wanx task finished task_id=%s status=%s images=%s polls=%s",
                    task.task_id, task.status, task.image_count, job.polls)
        with self.database.session() as session:
            if task.status == "SUCCEEDED":
                return self._record_success(session, job, task)
            upstream = {"upstream_status": task.status, "next_action_at": None}
            if task.status == "CANCELED":
                jobs.end_canceled_upstream(session=session, job_id=job.id,
                                           compute_cost=Job.compute_cost + task.compute_cost,
                                           **upstream)
            elif task.status == "UNKNOWN":
                jobs.fail(session=session, job_id=job.id, code=UNKNOWN_TASK,
                          message="DashScope no longer knows this task (expired or never "
                                  "existed)", compute_cost=task.compute_cost, **upstream)
            else:
                jobs.fail(session=session, job_id=job.id, code=task.code or "TaskFailed",
                          message=task.message or "The upstream task failed",
                          compute_cost=task.compute_cost, **upstream)
        return None

    def _record_success(self, session, job: Job, task: ImageTask) -> Step | None:
        usage = Usage(image_count=task.image_count)
        metrics.AI_IMAGES.labels(metrics.model_label(job.model)).inc(task.image_count)
        result = image_result(task)
        has_images = any(entry.get("upstream_url") for entry in result["output"]["results"])
        status = jobs.finish(
            session=session, job_id=job.id, user_id=job.user_id, model=job.model,
            kind=JobKind.IMAGE, created_at=job.created_at, result=result, usage=usage,
            cost=cost_of(self.settings.prices, job.model, usage),
            currency=self.settings.price_currency, path=job.path,
            compute_cost=job.compute_cost + task.compute_cost,
            upstream_status="SUCCEEDED", next_action_at=utcnow() if has_images else None)
        if status is None:
            return None  # another delivery recorded it (and owns the storing)
        if status != JobStatus.SUCCEEDED:
            # Billed, but not shown (canceled or expired meanwhile): nothing to store.
            jobs.schedule_action(session=session, job_id=job.id, due=None)
            return None
        return Step(STORE, job.id) if has_images else None

    # --- store ---------------------------------------------------------------------------

    def store_images(self, job_id: str) -> Step | None:
        """Copy a succeeded job's images into our storage; retried until done or given up."""
        with self.database.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.status != JobStatus.SUCCEEDED or job.next_action_at is None:
                return None
            result = job.result
            finished_at = job.finished_at
        bind_log_context(job_id=job_id, user_id=job.user_id, request_id=job.correlation_id)
        entries = result["output"]["results"]
        failures = 0
        for index, entry in enumerate(entries):
            if entry.get("upstream_url") and not entry.get("stored"):
                try:
                    entry.update(self._copy(job_id, index, entry["upstream_url"]))
                except (requests.RequestException, ValueError, OSError) as exc:
                    failures += 1
                    entry["storage_error"] = str(exc)[:200]
                    logger.warning("image copy failed index=%s error=%s", index, exc)
        age = (utcnow() - finished_at).total_seconds()
        give_up = failures and age > self.settings.image_store_give_up_seconds
        delay = min(300.0, max(5.0, age))
        due = utcnow() + _seconds(delay) if failures and not give_up else None
        with self.database.session() as session:
            jobs.replace_result(session=session, job_id=job_id, result=result, due=due)
        if due is None:
            announce_job_finished(self.redis, job_id)  # waiting requests get our URLs now
            return None
        return Step(STORE, job_id, delay)

    def _copy(self, job_id: str, index: int, url: str) -> dict:
        data, content_type = download_image(
            url, allowed_hosts=self.settings.image_download_hosts,
            max_bytes=self.settings.image_max_bytes,
            timeout=self.settings.upstream_timeout_seconds,
            allow_http=self.settings.image_download_allow_http)
        key = image_key(job_id, index, content_type)
        self.store.put(key, data, content_type)
        return {"stored": True, "key": key, "size": len(data), "content_type": content_type,
                "sha256": hashlib.sha256(data).hexdigest(), "storage_error": None}

    # --- cancel --------------------------------------------------------------------------

    def cancel_upstream(self, job_id: str) -> None:
        """Ask DashScope to cancel the job's task; only a PENDING task can be. Either way the
        polls go on, so what DashScope ends up billing is recorded."""
        with self.database.session() as session:
            job = session.get(Job, job_id)
        if job is None or not job.upstream_task_id \
                or UpstreamStatus(job.upstream_status).is_terminal:
            return
        try:
            canceled = backend_for(self.backends, job.path).cancel_image(job.upstream_task_id,
                                                                          job.model)
        except UpstreamError as error:
            logger.warning("wanx cancel failed task_id=%s code=%s", job.upstream_task_id,
                           error.code)
            return
        logger.info("wanx cancel task_id=%s canceled=%s", job.upstream_task_id, canceled)

    # --- pacing --------------------------------------------------------------------------

    def _interval(self, polls: int) -> float:
        """Backoff (1, 2, 5, 10 s by default), stretched to each task's fair share of the query
        budget when many tasks are in flight."""
        backoff = self.settings.image_poll_backoff
        base = backoff[min(polls, len(backoff) - 1)]
        in_flight = self.inflight.count(self.settings.image_models)
        fair_share = in_flight / (self.settings.task_query_budget * FAIR_SHARE_UTILISATION)
        interval = min(max(base, fair_share), self.settings.image_poll_max_interval)
        # +-10 %: tasks submitted together drift apart instead of polling in lockstep.
        return interval * random.uniform(0.9, 1.1)

    @staticmethod
    def _slot_ttl(interval: float) -> float:
        return 3 * interval + 60


def image_result(task: ImageTask) -> dict:
    """What a succeeded job stores: DashScope's output, images not yet copied."""
    results = [{"upstream_url": item["url"], "stored": False} if item.get("url")
               else {"code": item.get("code"), "message": item.get("message")}
               for item in task.results]
    return {"output": {"task_id": task.task_id, "task_status": task.status,
                       "results": results},
            "usage": {"image_count": task.image_count}}


def download_image(url: str, *, allowed_hosts: list[str], max_bytes: int,
                   timeout: float, allow_http: bool = False) -> tuple[bytes, str]:
    """Fetch an upstream image: allow-listed hosts only (https, or http on loopback), a size
    cap, and an image content type, because the URL comes from a third party."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    plain_ok = allow_http or host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and plain_ok):
        raise ValueError(f"refusing to download over {parts.scheme or 'no scheme'}: {url}")
    if not any(host == h.lstrip(".") or (h.startswith(".") and host.endswith(h))
               for h in allowed_hosts):
        raise ValueError(f"host {host!r} is not in IMAGE_DOWNLOAD_HOSTS")
    with requests.get(url, stream=True, timeout=timeout, allow_redirects=False) as response:
        response.raise_for_status()
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise ValueError(f"not an image: {content_type or 'no content type'}")
        data = bytearray()
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) > max_bytes:
                raise ValueError(f"image larger than {max_bytes} bytes")
    return bytes(data), content_type


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)
