"""Request and response models: validation lives here, not in the views."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    EmailStr,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from common.accounts.models import Role
from common.accounts.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.jobs.models import JobKind, JobStatus
from common.upstream import image_inputs
from common.upstream.chat_capabilities import ChatCapabilities, refusals
from common.upstream.wanx_models import (
    EDIT_PARAMETER_RANGES,
    MAX_IMAGES,
    NEGATIVE_PROMPT_MAX,
    SEED_MAX,
    ImageEditModel,
    ImageModelLimits,
    VideoModel,
)
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


def _allowed(table: str):
    """A validator: the model is a key of the validation context's `table`."""
    def check(cls, model: str, info: ValidationInfo) -> str:
        allowed = (info.context or {}).get(table, {})
        if model not in allowed:
            raise PydanticCustomError("model_not_allowed", "model must be one of: {allowed}",
                                      {"allowed": ", ".join(sorted(allowed))})
        return model
    return field_validator("model")(classmethod(check))


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


FunctionName = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
JsonObject = dict[str, Any]


class TextPart(StrictModel):
    type: Literal["text"]
    text: Annotated[str, Field(strict=True)]


class ImageURL(StrictModel):
    url: Annotated[str, Field(strict=True, min_length=1, description=(
        "An https URL (passed to DashScope as it is; the platform never fetches it) or a "
        "data: URL (checked here, uploaded to DashScope's temporary storage by the worker)"))]
    detail: Literal["auto", "low", "high"] | None = None  # OpenAI's; DashScope has no such


class ImagePart(StrictModel):
    type: Literal["image_url"]
    image_url: ImageURL


def _type_tag(value) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"type:{kind}" if isinstance(kind, str) else None


def by_type(*models: type[BaseModel], what: str):
    """A union chosen by the `type` field. Its tags ("type:text") are not identifiers, so an
    error's field path leaves them out (web/validation.field_errors): a client reads
    `response_format.json_schema.schema`, the fields it sent, not the branch taken."""
    kinds = [model.model_fields["type"].annotation.__args__[0] for model in models]
    branches = tuple(Annotated[model, Tag(f"type:{kind}")] for model, kind in zip(
        models, kinds, strict=True))
    return Annotated[Union[branches], Discriminator(  # noqa: UP007 - built at run time
        _type_tag, custom_error_type="invalid_type_tag",
        custom_error_message=f"{what} type must be one of: {', '.join(kinds)}")]


ContentPart = by_type(TextPart, ImagePart, what="a content part's")


class FunctionCall(StrictModel):
    name: FunctionName
    arguments: Annotated[str, Field(strict=True, description="The arguments, as JSON text")]


class ToolCall(StrictModel):
    id: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(StrictModel):
    """OpenAI's message shapes: text or content parts (images: user messages only), an
    assistant's tool calls, and `tool` messages answering one of them."""

    role: Literal["system", "user", "assistant", "tool"]
    tool_calls: Annotated[list[ToolCall], Field(min_length=1, max_length=64)] | None = None
    tool_call_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)] | None = \
        Field(default=None, validate_default=True)
    content: Annotated[str, Field(strict=True)] | \
        Annotated[list[ContentPart], Field(min_length=1, max_length=64)] | None = Field(
            default=None, validate_default=True)
    # OpenAI's optional participant name: accepted, not sent (DashScope ignores it).
    name: Annotated[str, Field(strict=True, max_length=64)] | None = Field(default=None,
                                                                          exclude=True)
    # What clients echo back of an assistant message they received: accepted when empty.
    refusal: None = Field(default=None, exclude=True)

    @field_validator("tool_calls")
    @classmethod
    def _only_assistants_call(cls, calls, info: ValidationInfo):
        if calls is not None and info.data.get("role") != "assistant":
            raise PydanticCustomError("message_shape", "only assistant messages have "
                                      "tool_calls")
        return calls

    @field_validator("tool_call_id")
    @classmethod
    def _tools_answer_a_call(cls, call_id: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")
        if role is not None and (role == "tool") != (call_id is not None):
            raise PydanticCustomError("message_shape", "tool messages, and only they, need "
                                      "tool_call_id")
        return call_id

    @field_validator("content")
    @classmethod
    def _content_of_role(cls, content, info: ValidationInfo):
        role = info.data.get("role")
        calls = role == "assistant" and info.data.get("tool_calls")
        problem = None
        if content is None and not calls:
            problem = "content is required"
        elif content == "" and not (calls or role == "tool"):
            problem = "content must not be empty"
        elif isinstance(content, list) and role != "user" and any(
                isinstance(part, ImagePart) for part in content):
            problem = "only user messages may contain images"
        if problem:
            raise PydanticCustomError("message_shape", problem)
        return content

    def image_urls(self) -> list[tuple[int, str]]:
        """(part index, URL) of each image part."""
        if not isinstance(self.content, list):
            return []
        return [(i, part.image_url.url) for i, part in enumerate(self.content)
                if isinstance(part, ImagePart)]


def _checked_schema(schema: JsonObject, what: str) -> JsonObject:
    """A JSON Schema, checked against its metaschema (draft 2020-12 unless `$schema` names
    another), and describing an object as OpenAI requires of parameters and formats."""
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        raise PydanticCustomError("json_schema", "{what} is not a valid JSON Schema: {error}",
                                  {"what": what, "error": f"{exc.message}"
                                   + (f" (at {path})" if path else "")}) from None
    if schema.get("type", "object") != "object":
        raise PydanticCustomError("json_schema", "{what} must describe an object "
                                  "(type: object)", {"what": what})
    return schema


class FunctionDefinition(StrictModel):
    name: FunctionName
    description: Annotated[str, Field(strict=True, max_length=4096)] | None = None
    parameters: JsonObject | None = Field(default=None, description="A JSON Schema (checked "
                                          "against its metaschema)")
    strict: Annotated[bool, Field(strict=True)] | None = None

    @field_validator("parameters")
    @classmethod
    def _valid_schema(cls, parameters: JsonObject | None) -> JsonObject | None:
        return None if parameters is None else _checked_schema(parameters, "parameters")


class Tool(StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class ChosenFunction(StrictModel):
    name: FunctionName


class NamedToolChoice(StrictModel):
    type: Literal["function"]
    function: ChosenFunction


class TextFormat(StrictModel):
    type: Literal["text"]


class JsonObjectFormat(StrictModel):
    type: Literal["json_object"]


class JsonSchemaSpec(StrictModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    name: FunctionName
    description: Annotated[str, Field(strict=True, max_length=4096)] | None = None
    # "schema" would shadow a BaseModel attribute: the field has another name, the alias.
    json_schema: JsonObject = Field(alias="schema")
    strict: Annotated[bool, Field(strict=True)] | None = None

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: JsonObject) -> JsonObject:
        return _checked_schema(schema, "json_schema.schema")


class JsonSchemaFormat(StrictModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = by_type(TextFormat, JsonObjectFormat, JsonSchemaFormat,
                         what="response_format")


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
    frequency_penalty: Annotated[StrictNumber, Field(ge=-2, le=2)] | None = None
    repetition_penalty: Annotated[StrictNumber, Field(gt=0)] | None = None
    n: Annotated[StrictInteger, Field(ge=1, le=4)] | None = None
    logprobs: Annotated[bool, Field(strict=True)] | None = None
    top_logprobs: Annotated[StrictInteger, Field(ge=0, le=20)] | None = None
    tools: Annotated[list[Tool], Field(min_length=1, max_length=128)] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: Annotated[bool, Field(strict=True)] | None = None
    response_format: ResponseFormat | None = None
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

    @field_validator("tools")
    @classmethod
    def _distinct_names(cls, tools: list[Tool] | None) -> list[Tool] | None:
        names = [tool.function.name for tool in tools or ()]
        if len(set(names)) != len(names):
            raise PydanticCustomError("tools", "tool function names must be distinct")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _a_tool_offered(cls, choice, info: ValidationInfo):
        if isinstance(choice, NamedToolChoice):
            names = {tool.function.name for tool in info.data.get("tools") or ()}
            if choice.function.name not in names:
                raise PydanticCustomError("tool_choice", "tool_choice names {name}, which is "
                                          "not in tools", {"name": choice.function.name})
        return choice

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top is not None and not info.data.get("logprobs"):
            raise PydanticCustomError("top_logprobs", "top_logprobs needs logprobs: true")
        return top

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, options, info: ValidationInfo):
        if options is not None and not info.data.get("stream"):
            raise PydanticCustomError("stream_options", "stream_options needs stream: true")
        return options

    _model_allowed = _allowed("chat_models")

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

    def rule_errors(self, settings: Settings) -> list[dict]:
        """What this model does not take (common/upstream/chat_capabilities.py), and images
        that cannot be sent, as per-field errors: found before any job exists."""
        caps = settings.chat_capabilities.get(self.model, ChatCapabilities())
        max_images = settings.chat_image_max_count
        images = [(f"messages.{m}.content.{p}.image_url.url", url)
                  for m, message in enumerate(self.messages) for p, url in message.image_urls()]
        errors = refusals(caps, self.model, self.upstream_parameters(), images=bool(images),
                          thinking=bool(self.enable_thinking))
        if self.stream and (self.n or 1) > 1:
            errors.append({"field": "n", "message": "n > 1 is answered only without stream"})
        refused_format = any(error["field"] == "response_format" for error in errors)
        if isinstance(self.response_format, JsonObjectFormat) and not refused_format and not any(
                "json" in text.lower() for text in self._texts()):
            # DashScope's own rule (dashscope-protocol-2.md section 2.5), checked up front.
            errors.append({"field": "response_format", "message": "the messages must contain "
                           "the word 'json' to use response_format json_object"})
        if images and settings.path_for("chat") == "fc":
            # The Function Compute handler calls text generation only (fc/handlers.py).
            errors.append({"field": "messages", "message": "images are not offered on the "
                           "Function Compute path"})
        elif caps.vision and len(images) > max_images:
            errors.append({"field": "messages", "message": f"at most {max_images} images"})
        elif caps.vision:
            for field, url in images:
                try:
                    image_inputs.checked(url, max_bytes=settings.chat_image_max_bytes)
                except image_inputs.ImageRefused as refused:
                    errors.append({"field": field, "message": str(refused)})
        return errors

    def _texts(self) -> list[str]:
        return [part for m in self.messages for part in (
            [m.content] if isinstance(m.content, str) else
            [p.text for p in m.content or () if isinstance(p, TextPart)])]

    def upstream_parameters(self) -> dict:
        """The DashScope parameters that were set (n, logprobs off: the same as unset)."""
        parameters = self.model_dump(exclude={"model", "messages", "stream", "stream_options",
                                              "webhook", "webhook_events_filter"},
                                     exclude_none=True, by_alias=True)
        if parameters.get("n") == 1:
            parameters.pop("n")
        if parameters.get("logprobs") is False:
            parameters.pop("logprobs")
        return parameters

    def job_request(self) -> dict:
        """What the worker needs: the messages and the upstream parameters that were set."""
        parameters = self.upstream_parameters()
        if parameters.get("temperature") == 2:
            # We accept the documented 0-2; DashScope's own range is [0, 2).
            parameters["temperature"] = 1.99
        # An assistant message of tool calls goes upstream with content "", as DashScope's
        # own recordings send it back (dashscope-protocol-2.md section 2.1).
        request = {"messages": [{"content": "", **m.model_dump(exclude_none=True)}
                                for m in self.messages], "parameters": parameters}
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

    _model_allowed = _allowed("image_models")

    def rule_errors(self, family: ImageModelLimits) -> list[dict]:
        """What this model (its row of IMAGE_MODELS) does not accept, as per-field errors."""
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
        if (self.n or params.n or 1) > family.max_n:
            errors.append(("n", f"at most {family.max_n} for {self.model}"))
        return _field_errors(errors)

    @property
    def size(self) -> str | None:
        size = self.parameters.size
        return size.lower().replace("x", "*") if size else None

    def job_request(self, rules: ImageModelLimits) -> dict:
        """What the worker sends (every task request is given its model's row; a text-to-
        image request needs nothing from it)."""
        params = self.parameters
        upstream = {"size": self.size, "style": params.style,
                    "n": self.n or params.n or 1,  # DashScope's default is 4 (and 4x the cost)
                    "seed": self.seed if self.seed is not None else params.seed,
                    "prompt_extend": params.prompt_extend, "watermark": params.watermark}
        return {"prompt": self.prompt,
                "negative_prompt": self.negative_prompt or params.negative_prompt,
                "parameters": {k: v for k, v in upstream.items() if v is not None},
                "quality": params.quality}


def _field_errors(errors: list[tuple[str, str]]) -> list[dict]:
    return [{"field": field, "message": message} for field, message in errors]


HttpsUrl = Annotated[str, StringConstraints(strict=True, min_length=9, max_length=2048,
                                            pattern=r"^https://[^\s/?#]+[^\s]*$")]


class StoredImageReference(StrictModel):
    """An image the platform holds: one the user uploaded, or one of their job's images."""

    file_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=36)] | \
        None = None
    job_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=36)] | \
        None = None
    index: Annotated[StrictInteger, Field(ge=0, le=16)] | None = None

    @field_validator("index")
    @classmethod
    def _needs_job(cls, index, info: ValidationInfo):
        if index is not None and not info.data.get("job_id"):
            raise PydanticCustomError("image_reference", "index needs a job_id")
        return index

    @model_validator(mode="after")
    def _one_source(self) -> StoredImageReference:
        if (self.file_id is None) == (self.job_id is None):
            raise PydanticCustomError("image_reference", "give either file_id or job_id")
        return self


# An input image: an https URL (sent to DashScope as it is; never fetched by the platform),
# or a reference to an image the platform stores (sent through DashScope's file upload).
ImageInput = HttpsUrl | StoredImageReference


def image_reference(value: ImageInput) -> dict:
    """The reference as the job stores it (common/jobs/input_images.py reads it)."""
    if isinstance(value, str):
        return {"url": value}
    if value.file_id is not None:
        return {"file_id": value.file_id}
    return {"job_id": value.job_id, "index": value.index or 0}


class ImageEditParameters(StrictModel):
    n: Annotated[StrictInteger, Field(ge=1, le=MAX_IMAGES)] | None = None
    seed: Annotated[StrictInteger, Field(ge=0, le=SEED_MAX)] | None = None
    watermark: Annotated[bool, Field(strict=True)] | None = None
    strength: StrictNumber | None = None
    top_scale: StrictNumber | None = None
    bottom_scale: StrictNumber | None = None
    left_scale: StrictNumber | None = None
    right_scale: StrictNumber | None = None
    upscale_factor: StrictInteger | None = None
    is_sketch: Annotated[bool, Field(strict=True)] | None = None


class ImageEditRequest(WebhookFields):
    """POST /api/bailian/image-edit. Needs the validation context {"image_edit_models": ...}."""

    model: Annotated[str, Field(strict=True)]
    function: Annotated[str, Field(strict=True, min_length=1, max_length=64)]
    prompt: Annotated[str, Field(strict=True, min_length=1)]
    base_image: ImageInput
    mask_image: ImageInput | None = Field(default=None, description=(
        "White where the image is edited; the base image's size (description_edit_with_mask)"))
    parameters: ImageEditParameters = Field(default_factory=ImageEditParameters)

    _model_allowed = _allowed("image_edit_models")

    def rule_errors(self, rules: ImageEditModel) -> list[dict]:
        errors = []
        function = rules.functions.get(self.function)
        if function is None:
            return _field_errors([("function", "must be one of "
                                   f"{', '.join(sorted(rules.functions))}")])
        if len(self.prompt) > rules.prompt_max:
            errors.append(("prompt", f"at most {rules.prompt_max} characters for {self.model}"))
        if function.mask and self.mask_image is None:
            errors.append(("mask_image", f"{self.function} needs a mask_image"))
        if not function.mask and self.mask_image is not None:
            errors.append(("mask_image", f"{self.function} takes no mask_image"))
        params = self.parameters
        for name in ImageEditParameters.model_fields:
            value = getattr(params, name)
            if value is None or name in ("n", "seed", "watermark"):
                continue
            if name not in function.parameters:
                errors.append((f"parameters.{name}", f"not a parameter of {self.function}"))
            elif name in EDIT_PARAMETER_RANGES:
                low, high = EDIT_PARAMETER_RANGES[name]
                if not low <= value <= high:
                    errors.append((f"parameters.{name}", f"must be between {low:g} and "
                                                         f"{high:g}"))
        if (params.n or 1) > rules.max_n:
            errors.append(("parameters.n", f"at most {rules.max_n} for {self.model}"))
        return _field_errors(errors)

    def image_inputs(self) -> dict[str, ImageInput]:
        inputs = {"base_image_url": self.base_image}
        if self.mask_image is not None:
            inputs["mask_image_url"] = self.mask_image
        return inputs

    def job_request(self, rules: ImageEditModel) -> dict:
        """What the worker sends: the function goes in `input` beside the images."""
        parameters = self.parameters.model_dump(exclude_none=True)
        parameters.setdefault("n", 1)
        return {"prompt": self.prompt, "negative_prompt": None, "parameters": parameters,
                "fields": {"function": self.function},
                "images": {field: image_reference(value)
                           for field, value in self.image_inputs().items()}}


class VideoRequest(WebhookFields):
    """POST /api/bailian/video: text-to-video, image-to-video (`image`) or first and last
    frame (`first_frame`, `last_frame`), by model. Needs the validation context
    {"video_models": ...}."""

    model: Annotated[str, Field(strict=True)]
    prompt: Annotated[str, Field(strict=True, min_length=1)] | None = None
    negative_prompt: Annotated[str, Field(strict=True, max_length=NEGATIVE_PROMPT_MAX)] | None = \
        None
    image: ImageInput | None = Field(default=None, description="The first frame (image-to-"
                                                               "video models)")
    first_frame: ImageInput | None = None
    last_frame: ImageInput | None = None
    size: Annotated[str, Field(strict=True, max_length=16)] | None = Field(
        default=None, description="WIDTH*HEIGHT (text-to-video models)")
    resolution: Annotated[str, Field(strict=True, max_length=8)] | None = Field(
        default=None, description="480P, 720P or 1080P (image-to-video and keyframe models)")
    duration: StrictInteger | None = Field(default=None, description="Seconds of video")
    seed: Annotated[StrictInteger, Field(ge=0, le=SEED_MAX)] | None = None
    prompt_extend: Annotated[bool, Field(strict=True)] | None = None
    watermark: Annotated[bool, Field(strict=True)] | None = None

    _model_allowed = _allowed("video_models")

    def rule_errors(self, rules: VideoModel) -> list[dict]:
        errors = []
        # input kind -> (the images it needs, the images it takes)
        needed, taken = {"text": ((), ()), "image": (("image",), ("image",)),
                         "keyframes": (("first_frame",), ("first_frame", "last_frame"))
                         }[rules.input]
        for name in ("image", "first_frame", "last_frame"):
            given = getattr(self, name) is not None
            if name in needed and not given:
                errors.append((name, f"{self.model} needs {name}"))
            if given and name not in taken:
                errors.append((name, f"not accepted by {self.model}"))
        if rules.input == "text" and self.prompt is None:
            errors.append(("prompt", f"{self.model} needs a prompt"))
        if self.prompt is not None and len(self.prompt) > rules.prompt_max:
            errors.append(("prompt", f"at most {rules.prompt_max} characters for {self.model}"))
        if self.size is not None and self.size.replace("x", "*") not in rules.sizes:
            errors.append(("size", f"must be one of {', '.join(rules.sizes)}" if rules.sizes
                           else f"{self.model} takes a resolution, not a size"))
        if self.resolution is not None and self.resolution.upper() not in rules.resolutions:
            errors.append(("resolution", f"must be one of {', '.join(rules.resolutions)}"
                           if rules.resolutions else f"{self.model} takes a size, not a "
                                                     "resolution"))
        if self.duration is not None and self.duration not in rules.durations:
            errors.append(("duration", "must be one of "
                                       f"{', '.join(map(str, rules.durations))} seconds"))
        for name in ("prompt_extend", "watermark"):
            if getattr(self, name) is not None and not rules.prompt_extend:
                errors.append((name, f"not supported by {self.model}"))
        return _field_errors(errors)

    def image_inputs(self) -> dict[str, ImageInput]:
        fields = {"img_url": self.image, "first_frame_url": self.first_frame,
                  "last_frame_url": self.last_frame}
        return {field: value for field, value in fields.items() if value is not None}

    def job_request(self, rules: VideoModel) -> dict:
        upstream = {"size": self.size and self.size.replace("x", "*"),
                    "resolution": self.resolution and self.resolution.upper(),
                    # Always sent: the budget reserves for it, and DashScope bills it.
                    "duration": self.duration or rules.default_duration,
                    "seed": self.seed, "prompt_extend": self.prompt_extend,
                    "watermark": self.watermark}
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "parameters": {k: v for k, v in upstream.items() if v is not None},
                "images": {field: image_reference(value)
                           for field, value in self.image_inputs().items()}}


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
