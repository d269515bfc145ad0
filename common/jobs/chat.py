"""Chat jobs: one attempt against the AI backend, and the result it records.

An attempt never holds a database connection during the upstream call, and a billed result
is kept in Redis while MySQL is unreachable, so a redelivery records it instead of calling
upstream (and paying) again.

A job whose client streams, or whose model only answers streamed, reads DashScope's stream
(common/jobs/streaming.py); the result and usage row are committed at the end all the same.
"""

from __future__ import annotations

import logging

import redis
from pydantic import BaseModel

from common.billing.pricing import cost_of
from common.infra.log import bind_log_context
from common.infra.settings import Settings
from common.jobs.lifecycle import Billed, Claim, JobLifecycle
from common.jobs.results import ChatCompletion
from common.jobs.streaming import StreamingAttempts
from common.upstream.backends import backend_for
from common.upstream.failures import UpstreamError
from common.upstream.interface import AIBackend, ChatRequest, ChatResult

logger = logging.getLogger(__name__)

STASH_KEY = "bailian:chat-result:{}"
STASH_TTL = 7 * 24 * 3600


class ChatJobs:
    def __init__(self, *, lifecycle: JobLifecycle, backends: dict[str, AIBackend],
                 redis_client: redis.Redis, settings: Settings) -> None:
        self.lifecycle = lifecycle
        self.backends = backends
        self.redis = redis_client
        self.settings = settings
        self.streaming = StreamingAttempts(self)

    def run(self, job_id: str) -> None:
        """Run one attempt of a chat job (a no-op for a job another delivery holds or that
        has finished)."""
        claim = self.lifecycle.claim(job_id, lease_seconds=self.settings.job_lease_seconds)
        # Only a repeated delivery can find a result an earlier attempt could not store.
        if (claim is None or claim.attempt > 1) and self._record_stashed(job_id):
            return
        if claim is None:
            return
        bind_log_context(job_id=claim.id, user_id=claim.user_id, request_id=claim.correlation_id)
        request = ChatRequest(model=claim.model, messages=claim.request["messages"],
                              parameters=claim.request.get("parameters", {}),
                              correlation_id=claim.correlation_id, user_id=claim.user_id)
        backend = backend_for(self.backends, claim.path)
        if claim.streams or self._must_stream(request):
            self.streaming.run(claim, request, backend)
            return
        try:
            answer = backend.chat(request)
        except UpstreamError as error:
            self.lifecycle.upstream_failed(claim, error, retry_task=claim.first_task)
            return
        logger.info("chat upstream ok attempt=%s path=%s input_tokens=%s output_tokens=%s",
                    claim.attempt, claim.path, answer.usage.input_tokens,
                    answer.usage.output_tokens)
        self.record(claim, self.billed(claim, answer))

    def _must_stream(self, request: ChatRequest) -> bool:
        """DashScope answers these only as a stream (dashscope-protocol-2.md section 1.5)."""
        return request.model in self.settings.stream_only_chat_models or bool(
            request.parameters.get("enable_thinking"))

    def billed(self, claim: Claim, answer: ChatResult) -> Billed:
        return Billed(
            result=ChatCompletion.of(job_id=claim.id, model=claim.model, answer=answer),
            usage=answer.usage, cost=cost_of(self.settings.prices, claim.model, answer.usage),
            currency=self.settings.price_currency,
            upstream_request_id=answer.upstream_request_id, compute_cost=answer.compute_cost)

    def record(self, claim: Claim, billed: Billed) -> None:
        """Persist a billed result with its usage row; stash it first if the database fails."""
        try:
            self.lifecycle.finish(claim, billed)
        except Exception:
            self._stash(claim, billed)
            raise

    def _stash(self, claim: Claim, billed: Billed) -> None:
        payload = StashedResult(claim=claim, billed=billed).model_dump_json()
        try:
            self.redis.set(STASH_KEY.format(claim.id), payload, ex=STASH_TTL)
            logger.warning("database unavailable: billed result kept in redis until it can be "
                           "stored")
        except redis.RedisError:
            logger.error("database and redis unavailable: result of job_id=%s not kept",
                         claim.id)

    def _record_stashed(self, job_id: str) -> bool:
        raw = self.redis.get(STASH_KEY.format(job_id))
        if not raw:
            return False
        stashed = StashedResult.model_validate_json(raw)
        self.record(stashed.claim, stashed.billed)
        self.redis.delete(STASH_KEY.format(job_id))
        return True


class StashedResult(BaseModel):
    """A billed result kept in Redis (STASH_KEY) until the database takes it."""

    claim: Claim
    billed: Billed
