"""Chat jobs: one attempt of a job against the AI backend, and the result it records.

`run_attempt` is what the `jobs.run_chat` task calls. It never holds a database connection
during the upstream call, retries only what is worth retrying, and keeps a billed result in
Redis while MySQL is unreachable so a redelivery records it instead of calling upstream again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from decimal import Decimal

import redis

from common.billing.pricing import Usage, cost_of
from common.infra.db import Database
from common.infra.log import bind_log_context
from common.infra.metrics import JOB_RETRIES
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.jobs import lifecycle as jobs
from common.jobs.events import announce_job_finished
from common.jobs.models import Job, JobKind
from common.upstream.failures import RetryPolicy, UpstreamError, code_label
from common.upstream.interface import AIBackend, ChatRequest, ChatResult

logger = logging.getLogger(__name__)

STASH_KEY = "bailian:chat-result:{}"
STASH_TTL = 7 * 24 * 3600


def chat_completion(job: Job, result: ChatResult) -> dict:
    """The response `data` of a completed chat, in the OpenAI chat.completion shape."""
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": job.model,
        "choices": [{"index": 0, "message": result.message,
                     "finish_reason": result.finish_reason}],
        "usage": {"prompt_tokens": result.usage.input_tokens,
                  "completion_tokens": result.usage.output_tokens,
                  "total_tokens": result.usage.total_tokens},
    }


def retry_delay(error: UpstreamError, attempt: int, settings: Settings) -> float:
    return RetryPolicy.from_settings(settings).delay(error, attempt)


def run_attempt(*, database: Database, backends: dict[str, AIBackend],
                redis_client: redis.Redis, settings: Settings, job_id: str) -> float | None:
    """Run one attempt of a chat job. Returns seconds until a retry is due, or None when done
    (finished, failed, or owned by another delivery)."""
    with database.session() as session:
        claim = jobs.claim(session=session, job_id=job_id, lease_seconds=settings.job_lease_seconds,
                           max_attempts=settings.job_max_attempts)
    # Only a repeated delivery can find a result an earlier attempt could not store.
    if (claim is None or claim.attempt > 1) and _record_stashed(database, redis_client, settings,
                                                                 job_id):
        return None
    if claim is None:
        return None
    job = claim.job
    bind_log_context(job_id=job.id, user_id=job.user_id, request_id=job.correlation_id)

    request = ChatRequest(model=job.model, messages=job.request["messages"],
                          parameters=job.request.get("parameters", {}),
                          correlation_id=job.correlation_id, user_id=job.user_id)
    try:
        result = backend_for(backends, job.path).chat(request)
    except UpstreamError as error:
        return _handle_failure(database, redis_client, settings, job, claim.attempt, error)

    logger.info("chat upstream ok attempt=%s path=%s input_tokens=%s output_tokens=%s",
                claim.attempt, job.path, result.usage.input_tokens, result.usage.output_tokens)
    job_ref = {"id": job.id, "user_id": job.user_id, "model": job.model, "path": job.path,
               "created_at": job.created_at.isoformat(),
               "compute_cost": str(job.compute_cost + result.compute_cost)}
    _record(database, redis_client, settings, job_ref, chat_completion(job, result),
            result.usage, result.upstream_request_id)
    return None


def backend_for(backends: dict[str, AIBackend], path: str) -> AIBackend:
    """The backend of the path the job was submitted for; never another one."""
    backend = backends.get(path)
    if backend is None:
        raise UpstreamError(code="BackendNotConfigured", status=None, retryable=False,
                            message=f"This worker has no {path!r} backend configured")
    return backend


def _handle_failure(database: Database, redis_client: redis.Redis, settings: Settings, job: Job,
                    attempt: int, error: UpstreamError) -> float | None:
    delay = retry_delay(error, attempt, settings)
    time_left = (job.deadline_at - utcnow()).total_seconds()
    if error.retryable and attempt < settings.job_max_attempts and delay < time_left:
        logger.warning("chat upstream retryable attempt=%s code=%s retry_in=%.2f",
                       attempt, error.code, delay)
        JOB_RETRIES.labels(JobKind.CHAT.value, code_label(error.code)).inc()
        with database.session() as session:
            if jobs.schedule_retry(session=session, job_id=job.id, delay_seconds=delay,
                                   compute_cost=error.compute_cost):
                return delay
        return None  # canceled or expired meanwhile
    logger.warning("chat upstream failed attempt=%s code=%s status=%s message=%s",
                   attempt, error.code, error.status, error.message)
    with database.session() as session:
        jobs.fail(session=session, job_id=job.id, code=error.code, message=error.message,
                  compute_cost=error.compute_cost)
    announce_job_finished(redis_client, job.id)
    return None


def _record(database: Database, redis_client: redis.Redis, settings: Settings, job: dict,
            result: dict, usage: Usage, upstream_request_id: str | None) -> None:
    """Persist a billed result with its usage row; stash it first if the database fails."""
    cost = cost_of(settings.prices, job["model"], usage)
    try:
        with database.session() as session:
            jobs.finish(session=session, job_id=job["id"], user_id=job["user_id"],
                        model=job["model"], kind=JobKind.CHAT,
                        created_at=dt.datetime.fromisoformat(job["created_at"]),
                        result=result, usage=usage,
                        cost=cost, currency=settings.price_currency, path=job["path"],
                        upstream_request_id=upstream_request_id,
                        compute_cost=Decimal(job.get("compute_cost", "0")))
    except Exception:
        _stash(redis_client, job, result, usage, upstream_request_id)
        raise
    announce_job_finished(redis_client, job["id"])


def _stash(redis_client: redis.Redis, job: dict, result: dict, usage: Usage,
           upstream_request_id: str | None) -> None:
    payload = {"job": job, "result": result, "usage": usage.__dict__,
               "upstream_request_id": upstream_request_id}
    try:
        redis_client.set(STASH_KEY.format(job["id"]), json.dumps(payload), ex=STASH_TTL)
        logger.warning("database unavailable: billed result kept in redis until it can be stored")
    except redis.RedisError:
        logger.error("database and redis unavailable: result of job_id=%s not kept", job["id"])


def _record_stashed(database: Database, redis_client: redis.Redis, settings: Settings,
                    job_id: str) -> bool:
    raw = redis_client.get(STASH_KEY.format(job_id))
    if not raw:
        return False
    stashed = json.loads(raw)
    _record(database, redis_client, settings, stashed["job"], stashed["result"],
            Usage(**stashed["usage"]), stashed["upstream_request_id"])
    redis_client.delete(STASH_KEY.format(job_id))
    return True
