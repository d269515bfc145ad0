"""Response models: the shapes the API sends. The serializers build them from the domain's
types, and the OpenAPI document is generated from them, so the document describes what is
actually sent (schemathesis checks the two against each other in the test suite)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.accounts.models import Role
from common.jobs.shapes import (  # the job's shapes live with the job (the worker sends them)
    ChatCompletionData,
    GeneratedImage,
    GenerationData,
    GenerationOutput,
    JobCost,
    JobData,
    JobError,
    JobLinks,
    JobUsageData,
    VideoData,
)

__all__ = ["ChatCompletionData", "GeneratedImage", "GenerationData", "GenerationOutput",
           "JobCost", "JobData", "JobError", "JobLinks", "JobUsageData", "VideoData"]


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginUser(Shape):
    id: int
    username: str
    email: str | None


class LoginData(Shape):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    user: LoginUser


class RefreshData(Shape):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class UserData(Shape):
    id: int
    username: str
    email: str | None
    role: Role
    active: bool


class JobPage(Shape):
    items: list[JobData]
    next_cursor: str | None


class UsageTotals(Shape):
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    image_count: int
    video_seconds: int
    cost: float
    compute_cost: float


class UsageGroup(UsageTotals):
    model: str | None = None
    day: str | None = None
    key: int | None = None  # group_by=key: the API key that paid (null: a login)


class BudgetData(Shape):
    amount: float
    period: Literal["day", "month"]


class BudgetState(BudgetData):
    spent: float
    reserved: float = Field(description="Worst-case cost of the jobs in flight")
    remaining: float
    resets_at: str
    currency: str


class UsageBudgets(Shape):
    user: BudgetState | None = None
    key: BudgetState | None = None


class UsageReport(Shape):
    start: str
    end: str
    currency: str
    user_id: int | None = None
    all_users: bool | None = None
    totals: UsageTotals
    groups: list[UsageGroup] | None = None
    budget: UsageBudgets | None = None


class FieldError(Shape):
    field: str
    message: str


class Health(Shape):
    status: Literal["healthy"]
    timestamp: str


class Liveness(Shape):
    status: Literal["alive"]
    timestamp: str
    service: str
    version: str


class ReadinessChecks(Shape):
    database: str
    redis: str
    dashscope_api: Literal["configured", "not_configured"]
    function_compute: Literal["configured", "not_configured"]


class Readiness(Shape):
    status: Literal["ready", "not_ready"]
    timestamp: str
    checks: ReadinessChecks


class WebhookSecretData(Shape):
    secret: str = Field(description="whsec_ + base64 key: verify deliveries with it (Standard "
                                    "Webhooks)")
    previous_secret_expires_at: str | None = Field(
        default=None, description="After a rotation the previous secret signs too, until then")
    created_at: str
    rotated_at: str | None


class WebhookAttempt(Shape):
    webhook_id: str = Field(description="The webhook-id header, the same for every attempt of "
                                        "one delivery")
    event: Literal["start", "completed"]
    attempt: int
    status: Literal["pending", "delivered", "failed", "gone", "refused", "gave_up"]
    url: str
    response_code: int | None
    latency_ms: int | None
    error: str | None
    created_at: str
    attempted_at: str | None
    next_attempt_at: str | None


class WebhookAttempts(Shape):
    items: list[WebhookAttempt]


class WebhookRedelivery(Shape):
    webhook_id: str


class ApiKeyData(Shape):
    id: int
    user_id: int
    name: str
    prefix: str = Field(description="The first characters of the secret")
    last_four: str
    models: list[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    budget: BudgetData | None
    expires_at: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    spend_this_period: float = Field(description="In the budget's period (else this month)")


class CreatedApiKeyData(ApiKeyData):
    key: str = Field(description="The secret: shown this once, never again")


class FileData(Shape):
    """An uploaded image (POST /api/files): use its id as {"file_id"} in an image edit or a
    video request."""

    id: str
    filename: str | None
    content_type: str
    size: int
    width: int
    height: int
    sha256: str
    created_at: str
    url: str  # GET it with your token (uploads are private)
