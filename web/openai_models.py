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


# --- embeddings (POST /v1/embeddings) --------------------------------------------------------

class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Text only: OpenAI's token-array inputs are tiktoken ids,
    which mean nothing to DashScope's models. Anything else is refused by name."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(strict=True, min_length=1)]
    input: (Annotated[str, Field(strict=True, min_length=1)]
            | Annotated[list[Annotated[str, Field(strict=True, min_length=1)]],
                        Field(min_length=1)])
    dimensions: Annotated[int, Field(strict=True, gt=0)] | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: Annotated[str, Field(strict=True, max_length=256)] | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    def rule_errors(self, limits) -> list[dict]:
        """What this model does not accept (`limits`: its EmbeddingModel)."""
        errors = []
        if len(self.texts) > limits.max_rows:
            errors.append({"field": "input", "message": f"at most {limits.max_rows} texts per "
                                                        f"request for {self.model}"})
        if self.dimensions is not None and self.dimensions not in limits.dimensions:
            errors.append({"field": "dimensions", "message": f"{self.model} takes one of "
                           f"{', '.join(str(d) for d in limits.dimensions)}"})
        return errors


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian "
                                                     "float32 with encoding_format base64")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """OpenAI's embeddings response."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# --- images (POST /v1/images/generations) ----------------------------------------------------

# OpenAI's image parameters Wanx has no counterpart for: refused by name (the neutral values,
# which mean "the default", are the same as leaving them out).
IMAGE_UNSUPPORTED = {
    "quality": ("Wanx has no quality setting", ("standard", "auto")),
    "style": ("OpenAI's vivid/natural styles do not map to Wanx styles; use the platform's "
              "/api/bailian/generation for Wanx styles", ()),
    "background": ("Wanx has no background setting", ("auto",)),
    "moderation": ("DashScope moderates every prompt itself", ("auto",)),
    "output_format": ("Wanx answers PNG", ("png",)),
    "output_compression": ("Wanx answers PNG", ()),
    "partial_images": ("image streaming is not offered", (0,)),
    "stream": ("image streaming is not offered", (False,)),
}


class OpenAIImageRequest(BaseModel):
    """OpenAI's image generation request, mapped onto a Wanx job; DashScope's own parameters
    (negative_prompt, seed, prompt_extend, watermark) may come through the SDK's extra_body."""

    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, Field(strict=True, min_length=1)]
    model: Annotated[str, Field(strict=True, min_length=1)] | None = None
    n: Annotated[int, Field(strict=True, ge=1)] | None = None
    size: Annotated[str, Field(strict=True, pattern=r"^\d{2,5}x\d{2,5}$")] | None = Field(
        default=None, description="WIDTHxHEIGHT, e.g. 1024x1024 (sent to Wanx as 1024*1024)")
    response_format: Literal["url", "b64_json"] = "url"
    user: Annotated[str, Field(strict=True, max_length=256)] | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None

    def platform_request(self, default_model: str) -> dict[str, Any]:
        """The body of the equivalent /api/bailian/generation request (validated by it)."""
        parameters = {"size": self.size.replace("x", "*") if self.size else None,
                      "prompt_extend": self.prompt_extend, "watermark": self.watermark}
        body = {"model": self.model or default_model, "prompt": self.prompt, "n": self.n,
                "negative_prompt": self.negative_prompt, "seed": self.seed,
                "parameters": {k: v for k, v in parameters.items() if v is not None}}
        return {k: v for k, v in body.items() if v is not None}


def refuse_unsupported_image_parameters(payload: dict) -> dict:
    """The payload without neutral values of IMAGE_UNSUPPORTED; a 400 naming the others."""
    problems = [{"field": name, "message": IMAGE_UNSUPPORTED[name][0]} for name in payload
                if name in IMAGE_UNSUPPORTED and payload[name] is not None
                and payload[name] not in IMAGE_UNSUPPORTED[name][1]]
    if problems:
        raise ValidationFailed(errors=problems)
    return {k: v for k, v in payload.items() if k not in IMAGE_UNSUPPORTED}


class GeneratedImageData(BaseModel):
    url: str | None = Field(default=None, description="our stored copy (a signed link)")
    b64_json: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's images response."""

    created: int
    data: list[GeneratedImageData]
