"""Text embeddings, run in the request that asks for them and recorded like any job.

An embedding call takes a few milliseconds upstream; a trip through the queue and a worker
would add more than the call itself (measured: bench `embeddings_overhead`, README), so the
web process calls DashScope directly. The call is still a job of its own kind, for one
ledger: its row is committed (running, with the budget reservation) before DashScope is
called, and the result summary, the usage row and the settled reservation are committed in
one transaction by the lifecycle's `finish`, exactly as a worker records a chat job. The
vectors go to the caller only; the job row keeps what was embedded, not the texts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from decimal import Decimal

from common.billing.pricing import Usage, cost_of
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.jobs import submission
from common.jobs.lifecycle import Billed, Claim, JobLifecycle
from common.jobs.models import JobKind, JobStatus
from common.jobs.results import EmbeddingSummary
from common.jobs.views import JobView
from common.upstream.embedding_models import EMBEDDING_MODELS
from common.upstream.failures import UpstreamError
from common.upstream.interface import AIBackend, EmbeddingRequest

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EmbeddingCall:
    """What is embedded: the texts, and the parameters DashScope is sent."""

    model: str
    texts: list[str]
    dimension: int
    encoding_format: str

    def job_request(self) -> dict:
        """The job row's request: the call's shape and size, never the texts themselves
        (their UTF-8 size bounds the cost, for the budget's reservation)."""
        return {"input_count": len(self.texts),
                "input_bytes": sum(len(text.encode()) for text in self.texts),
                "parameters": {"dimension": self.dimension},
                "encoding_format": self.encoding_format}


@dataclasses.dataclass(frozen=True)
class Embedded:
    """The outcome of a call: the job as it ended, and the vectors when it succeeded."""

    view: JobView
    vectors: list[list[float]] | None = None
    usage: Usage | None = None  # DashScope's count, as recorded in the usage row


class EmbeddingCalls:
    def __init__(self, *, lifecycle: JobLifecycle, backend: AIBackend,
                 settings: Settings) -> None:
        self.lifecycle = lifecycle
        self.backend = backend
        self.settings = settings

    def embed(self, call: EmbeddingCall, *, user_id: int, job_id: str,
              correlation_id: str | None = None,
              charge: Callable | None = None) -> Embedded:
        """Commit the job (raising BudgetExceeded from `charge` refuses it), call DashScope
        once, and record the outcome. An upstream failure fails the job (no retry here: the
        caller's client decides, by the status it is answered with)."""
        view, _ = submission.submit(
            lifecycle=self.lifecycle, settings=self.settings, user_id=user_id,
            kind=JobKind.EMBEDDING, model=call.model, request=call.job_request(),
            correlation_id=correlation_id, job_id=job_id, charge=charge, in_request=True)
        claim = Claim(id=view.id, user_id=user_id, kind=JobKind.EMBEDDING, model=call.model,
                      request={}, path="dashscope", correlation_id=correlation_id, attempt=1,
                      deadline_at=view.deadline_at, created_at=view.created_at,
                      started_at=view.started_at, upstream_task_id=None,
                      upstream_status=None, polls=0, compute_cost=Decimal(0))
        fixed = not EMBEDDING_MODELS[call.model].takes_dimension
        try:
            answer = self.backend.embed(EmbeddingRequest(
                model=call.model, texts=call.texts, dimension=None if fixed else call.dimension,
                correlation_id=correlation_id))
        except UpstreamError as error:
            logger.warning("embedding upstream failed code=%s status=%s message=%s",
                           error.code, error.status, error.message)
            self.lifecycle.fail(claim, code=error.code, message=error.message)
            return Embedded(claim.view(JobStatus.FAILED, utcnow(), error_code=error.code[:64],
                                       error_message=error.message[:1024]))
        billed = Billed(result=EmbeddingSummary(count=len(answer.vectors),
                                                dimensions=call.dimension,
                                                encoding_format=call.encoding_format),
                        usage=answer.usage,
                        cost=cost_of(self.settings.prices, call.model, answer.usage),
                        currency=self.settings.price_currency,
                        upstream_request_id=answer.upstream_request_id)
        self.lifecycle.finish(claim, billed)
        return Embedded(claim.view(JobStatus.SUCCEEDED, utcnow(), result=billed.result),
                        answer.vectors, answer.usage)
