"""Request and response models: validation lives here, not in the views."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from common.accounts.models import Role
from common.accounts.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from common.infra.orm import utcnow
from common.jobs.models import JobKind, JobStatus
from common.upstream.wanx_models import MAX_IMAGES, NEGATIVE_PROMPT_MAX, SEED_MAX, family_of
from common.webhooks.targets import WebhookTarget

Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64,
                                            pattern=r"^[A-Za-z0-9_.\-@]+$")]
# The policy's bounds, so the schema documents them; the rest of the rule (admins' longer
# minimum, the common-password list) is common.accounts.users.check_password.
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_CHARS,
                                            max_length=MAX_PASSWORD_CHARS)]


class StrictModel(BaseModel):
    # Unknown fields are rejected so a client can never set what it should not (mass assignment).
    model_config = ConfigDict(extra="forbid")


class LoginRequest(StrictModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_CHARS)]


class ChangePasswordRequest(StrictModel):
    current_password: Annotated[str, StringConstraints(min_length=1,
                                                       max_length=MAX_PASSWORD_CHARS)]
    new_password: Password


class CreateUserRequest(StrictModel):
    username: Username
    password: Password
    email: EmailStr | None = None
    role: Role = Role.DEFAULT


class BudgetBody(StrictModel):
    """A spend budget in PRICE_CURRENCY per calendar day or month (BUDGET_TIME_ZONE)."""

    amount: Annotated[Decimal, Field(gt=0, le=Decimal("1e9"), decimal_places=8)]
    period: Literal["day", "month"]


class UpdateUserRequest(StrictModel):
    role: Role | None = None
    active: bool | None = Field(default=None, strict=True)
    # The user's own spend budget; null: the tier's default again (BUDGETS).
    budget: BudgetBody | None = None


StrictNumber = Annotated[float, Field(strict=True)]
StrictInteger = Annotated[int, Field(strict=True)]


class ChatMessage(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(strict=True, min_length=1)]


class StreamOptions(StrictModel):
    include_usage: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="End the stream with a chunk whose usage is the job's "
                                  "usage row (and whose choices are empty)")


class WebhookFields(StrictModel):
    """A job's optional webhook, the same on every job endpoint (common/webhooks/)."""

    webhook: Annotated[str, Field(strict=True, min_length=1, max_length=2048)] | None = Field(
        default=None, description="An https URL the job's events are POSTed to, signed the "
                                  "Standard Webhooks way (GET /api/webhooks/secret)")
    webhook_events_filter: Annotated[list[Literal["start", "completed"]],
                                     Field(min_length=1, max_length=2)] | None = Field(
        default=None, description="Which events to send (default: completed)")

    @field_validator("webhook_events_filter")
    @classmethod
    def _needs_webhook(cls, events, info: ValidationInfo):
        if events is not None and not info.data.get("webhook"):
            raise PydanticCustomError("webhook_events_filter",
                                      "webhook_events_filter needs a webhook")
        return events

    def webhook_target(self) -> WebhookTarget | None:
        return WebhookTarget.requested(self.webhook, self.webhook_events_filter)


class ChatCompletionRequest(WebhookFields):
    """POST /api/bailian/chat/completions. Parameters map 1:1 to DashScope's; unknown fields are
    rejected rather than silently dropped. Needs the validation context {"chat_models": ...}."""

    model: Annotated[str, Field(strict=True)]
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=256)]
    temperature: Annotated[StrictNumber, Field(ge=0, le=2)] | None = None
    top_p: Annotated[StrictNumber, Field(gt=0, le=1)] | None = None
    top_k: Annotated[StrictInteger, Field(ge=0, le=100)] | None = None
    max_tokens: Annotated[StrictInteger, Field(gt=0)] | None = None
    seed: Annotated[StrictInteger, Field(ge=0, le=2**31 - 1)] | None = None
    stop: Annotated[str, Field(strict=True, min_length=1)] | \
        Annotated[list[Annotated[str, Field(strict=True, min_length=1)]],
                  Field(min_length=1, max_length=4)] | None = None
    presence_penalty: Annotated[StrictNumber, Field(ge=-2, le=2)] | None = None
    repetition_penalty: Annotated[StrictNumber, Field(gt=0)] | None = None
    enable_search: Annotated[bool, Field(strict=True)] | None = None
    # Thinking (dashscope-protocol-2.md section 1.5): DashScope answers it only as a stream,
    # so the worker streams it upstream whether or not the client streams.
    enable_thinking: Annotated[bool, Field(strict=True)] | None = None
    thinking_budget: Annotated[StrictInteger, Field(gt=0)] | None = None
    stream: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="Answer as server-sent events: OpenAI chat.completion.chunk "
                                  "objects, then [DONE] (with Prefer: respond-async, watch "
                                  "GET /api/jobs/<id>/stream instead)")
    stream_options: StreamOptions | None = None

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, options, info: ValidationInfo):
        if options is not None and not info.data.get("stream"):
            raise PydanticCustomError("stream_options", "stream_options needs stream: true")
        return options

    @field_validator("model")
    @classmethod
    def _allowed_model(cls, model: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get("chat_models", {})
        if model not in allowed:
            raise PydanticCustomError("model_not_allowed", "model must be one of: {allowed}",
                                      {"allowed": ", ".join(sorted(allowed))})
        return model

    @field_validator("max_tokens")
    @classmethod
    def _within_model_limit(cls, max_tokens: int | None, info: ValidationInfo) -> int | None:
        model = info.data.get("model")
        limit = (info.context or {}).get("chat_models", {}).get(model)
        if max_tokens is not None and limit is not None and max_tokens > limit:
            raise PydanticCustomError("max_tokens_limit",
                                      "max_tokens must be at most {limit} for {model}",
                                      {"limit": limit, "model": model})
        return max_tokens

    def job_request(self) -> dict:
        """What the worker needs: the messages and the upstream parameters that were set."""
        parameters = self.model_dump(exclude={"model", "messages", "stream", "stream_options",
                                              "webhook", "webhook_events_filter"},
                                     exclude_none=True)
        if parameters.get("temperature") == 2:
            # We accept the documented 0-2; DashScope's own range is [0, 2).
            parameters["temperature"] = 1.99
        request = {"messages": [m.model_dump() for m in self.messages], "parameters": parameters}
        if self.stream:
            request["stream"] = True
            request["include_usage"] = bool(self.stream_options and
                                            self.stream_options.include_usage)
        return request


class JobListQuery(StrictModel):
    status: JobStatus | None = None
    kind: JobKind | None = None
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class UsageQuery(StrictModel):
    start: dt.datetime | dt.date | None = None
    end: dt.datetime | dt.date | None = None
    group_by: Literal["model", "day", "key"] | None = None
    user_id: Annotated[int, Field(ge=1)] | None = None
    all: bool = False

    @field_validator("start", "end")
    @classmethod
    def _plausible(cls, value: dt.datetime | dt.date | None) -> dt.datetime | dt.date | None:
        # Usage exists from 1970 on; far-off dates would only overflow the default window.
        if value is not None and not 1970 <= value.year <= 9000:
            raise PydanticCustomError("date_range", "must be between the years 1970 and 9000")
        return value

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) as naive UTC; defaults to the last 30 days."""
        end = _as_utc(self.end) if self.end else utcnow()
        start = _as_utc(self.start) if self.start else end - dt.timedelta(days=30)
        return start, end


def _as_utc(value: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


class GenerationParameters(StrictModel):
    size: Annotated[str, Field(strict=True, max_length=16)] | None = None
    style: Annotated[str, Field(strict=True, max_length=32)] | None = None
    # Accepted for compatibility with the documented request; Wanx has no quality setting.
    quality: Literal["standard", "hd"] | None = None
    n: Annotated[StrictInteger, Field(ge=1, le=MAX_IMAGES)] | None = None
    seed: Annotated[StrictInteger, Field(ge=0, le=SEED_MAX)] | None = None
    negative_prompt: Annotated[str, Field(strict=True, max_length=NEGATIVE_PROMPT_MAX)] | None = \
        None
    prompt_extend: Annotated[bool, Field(strict=True)] | None = None
    watermark: Annotated[bool, Field(strict=True)] | None = None


class GenerationRequest(WebhookFields):
    """POST /api/bailian/generation. Needs the validation context {"image_models": ...}.

    `negative_prompt`, `n` and `seed` may sit at the top level or in `parameters`.
    """

    model: Annotated[str, Field(strict=True)]
    prompt: Annotated[str, Field(strict=True, min_length=1)]
    negative_prompt: Annotated[str, Field(strict=True, max_length=NEGATIVE_PROMPT_MAX)] | None = \
        None
    n: Annotated[StrictInteger, Field(ge=1, le=MAX_IMAGES)] | None = None
    seed: Annotated[StrictInteger, Field(ge=0, le=SEED_MAX)] | None = None
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)

    @field_validator("model")
    @classmethod
    def _allowed_model(cls, model: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get("image_models", {})
        if model not in allowed:
            raise PydanticCustomError("model_not_allowed", "model must be one of: {allowed}",
                                      {"allowed": ", ".join(sorted(allowed))})
        return model

    def rule_errors(self) -> list[dict]:
        """What this model does not accept, as per-field errors."""
        family = family_of(self.model)
        params = self.parameters
        errors = []
        if len(self.prompt) > family.prompt_max:
            errors.append(("prompt", f"at most {family.prompt_max} characters for {self.model}"))
        for name in ("negative_prompt", "n", "seed"):
            if getattr(self, name) is not None and getattr(params, name) is not None:
                errors.append((name, f"give {name} either at the top level or in parameters"))
        if params.size is not None and (problem := family.size_error(self.size)):
            errors.append(("parameters.size", problem))
        if params.style is not None and params.style not in family.styles:
            errors.append(("parameters.style", f"must be one of {', '.join(family.styles)}"
                           if family.styles else f"{self.model} takes no style"))
        for name in ("prompt_extend", "watermark"):
            if getattr(params, name) is not None and not family.prompt_extend:
                errors.append((f"parameters.{name}", f"not supported by {self.model}"))
        return [{"field": field, "message": message} for field, message in errors]

    @property
    def size(self) -> str | None:
        size = self.parameters.size
        return size.lower().replace("x", "*") if size else None

    def job_request(self) -> dict:
        params = self.parameters
        upstream = {"size": self.size, "style": params.style,
                    "n": self.n or params.n or 1,  # DashScope's default is 4 (and 4x the cost)
                    "seed": self.seed if self.seed is not None else params.seed,
                    "prompt_extend": params.prompt_extend, "watermark": params.watermark}
        return {"prompt": self.prompt,
                "negative_prompt": self.negative_prompt or params.negative_prompt,
                "parameters": {k: v for k, v in upstream.items() if v is not None},
                "quality": params.quality}


# --- API keys and budgets (common.accounts.api_keys, common.billing.budgets) ----------------

KeyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=100)]
ModelList = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
                      Field(min_length=1, max_length=50)]
PositiveLimit = Annotated[int, Field(strict=True, ge=1, le=10**9)]


class CreateKeyRequest(StrictModel):
    name: KeyName
    expires_at: dt.datetime | None = None
    models: ModelList | None = Field(default=None, description="Allowed models (default: all)")
    rpm_limit: PositiveLimit | None = None
    tpm_limit: PositiveLimit | None = None
    budget: BudgetBody | None = None

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        if value <= utcnow():
            raise PydanticCustomError("expires_at", "expires_at must be in the future")
        return value


class UpdateKeyRequest(StrictModel):
    """Only the fields sent change; null clears a limit, the allow-list or the budget."""

    name: KeyName | None = None
    models: ModelList | None = None
    rpm_limit: PositiveLimit | None = None
    tpm_limit: PositiveLimit | None = None
    budget: BudgetBody | None = None


class KeyListQuery(StrictModel):
    user_id: Annotated[int, Field(ge=1)] | None = None  # admins: another user's keys
    all: bool = False  # admins: everyone's keys
