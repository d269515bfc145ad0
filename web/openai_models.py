"""The request and response objects of the OpenAI-compatible `/v1` surface.

A `/v1` chat request is translated into the platform's own chat request and validated by it,
so both surfaces share one set of rules (models, ranges, message shapes) and one job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.errors import ValidationFailed

# OpenAI parameters DashScope's chat models do not take (or this platform does not offer yet):
# refused by name, never silently dropped (a client relying on one would get wrong answers).
UNSUPPORTED = {
    "logit_bias": "DashScope does not support logit_bias",
    "functions": "the deprecated functions are not offered; use tools",
    "function_call": "the deprecated function_call is not offered; use tool_choice",
    "audio": "audio output is not offered",
    "modalities": "only text output is offered",
    "prediction": "predicted outputs are not offered",
    "reasoning_effort": "use enable_thinking models through the platform's own API",
    "service_tier": "DashScope has no service tiers",
    "store": "stored completions are not offered",
    "metadata": "stored completions are not offered",
    "web_search_options": "use enable_search",
}
# Sent by clients with the value that means "off"; those are the same as leaving them out.
# (What a model takes of the rest, tools, n and logprobs included, is one table:
# common/upstream/chat_capabilities.py, read by the platform's request model.)
_NEUTRAL = {"stream": (False, None), "n": (1, None), "logprobs": (False, None),
            "parallel_tool_calls": (None,), "frequency_penalty": (0, 0.0, None),
            "presence_penalty": (None,), "tool_choice": (None,), "tools": (None,),
            "response_format": (None, {"type": "text"}), "store": (False, None),
            "stream_options": (None,)}


class OpenAIChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request this surface reads itself; the rest go
    to the platform's request model as they are (DashScope extensions such as top_k,
    repetition_penalty and enable_search, sent through the SDK's extra_body, included)."""

    model_config = ConfigDict(extra="allow")

    max_completion_tokens: Annotated[int, Field(strict=True, gt=0)] | None = None
    max_tokens: Annotated[int, Field(strict=True, gt=0)] | None = None
    user: Annotated[str, Field(strict=True, max_length=256)] | None = None

    def platform_request(self) -> dict[str, Any]:
        """The body of the equivalent /api/bailian/chat/completions request."""
        if (self.max_tokens is not None and self.max_completion_tokens is not None
                and self.max_tokens != self.max_completion_tokens):
            raise ValidationFailed(errors=[{
                "field": "max_completion_tokens",
                "message": "differs from max_tokens; send one of them"}])
        body = dict(self.model_extra or {})
        tokens = self.max_completion_tokens or self.max_tokens
        if tokens is not None:
            body["max_tokens"] = tokens
        return body


def refuse_unsupported(payload: dict) -> None:
    problems = [{"field": name, "message": UNSUPPORTED[name]} for name in payload
                if name in UNSUPPORTED and payload[name] not in _NEUTRAL.get(name, ())]
    if problems:
        raise ValidationFailed(errors=problems)
    for name in [n for n in payload if n in _NEUTRAL and payload[n] in _NEUTRAL[n]]:
        payload.pop(name)


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "dashscope"
    kind: Literal["chat", "image", "embedding"] = Field(
        description="What the model does here (an extension of OpenAI's object)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error object, the body of every /v1 error."""

    error: OpenAIErrorDetail
