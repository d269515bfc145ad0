"""Response models: the shapes the API sends. The serializers build them from the domain's
types, and the OpenAPI document is generated from them, so the document describes what is
actually sent (schemathesis checks the two against each other in the test suite)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.accounts.models import Role
from common.jobs.results import ChatCompletion, ImageUsage


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


class ChatCompletionData(ChatCompletion):
    """A chat job's result as sent: the chat.completion object and the job it came from."""

    job_id: str


class GeneratedImage(Shape):
    url: str | None = None  # our signed link once stored, DashScope's until then
    stored: bool | None = None
    upstream_url: str | None = None
    size: int | None = None
    content_type: str | None = None
    code: str | None = None  # a failed image of a partial success
    message: str | None = None


class GenerationOutput(Shape):
    task_id: str
    task_status: str
    results: list[GeneratedImage]


class GenerationData(Shape):
    """An image job's result as sent: DashScope's task output with links to our copies."""

    output: GenerationOutput
    usage: ImageUsage | None
    job_id: str


class JobError(Shape):
    code: str | None
    message: str | None


class JobUsageData(Shape):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    image_count: int
    estimated: bool = Field(default=False, description=(
        "The tokens are the platform's estimate: the job's stream ended (canceled, or its "
        "worker lost) before DashScope reported usage"))


class JobCost(Shape):
    amount: float
    currency: str


class JobLinks(Shape):
    self: str
    cancel: str


class JobData(Shape):
    id: str
    kind: Literal["chat", "image"]
    model: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    deadline_at: str
    attempts: int
    result: ChatCompletionData | GenerationData | None
    error: JobError | None
    usage: JobUsageData | None
    cost: JobCost | None
    links: JobLinks


class JobPage(Shape):
    items: list[JobData]
    next_cursor: str | None


class UsageTotals(Shape):
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    image_count: int
    cost: float
    compute_cost: float


class UsageGroup(UsageTotals):
    model: str | None = None
    day: str | None = None
    key: int | None = None  # group_by=key: the API key that paid (null: a login)


class BudgetData(Shape):
    amount: float
    period: Literal["day", "month"]


class BudgetState(Shape):
    amount: float
    period: Literal["day", "month"]
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
