"""What each chat model accepts beyond plain messages: the one table request validation reads
(both chat surfaces), so a parameter a model does not take is a 400 naming it, never dropped.

Grounded in dashscope-protocol-2.md section 2 (tools, response_format, sampling controls) and
section 3 (vision); where the document marks a fact UNCONFIRMED the table refuses rather than
guesses (`tool_choice: "required"`, `frequency_penalty`). Override it with CHAT_CAPABILITIES
(JSON: model -> fields below) when DashScope's documentation for a model says more.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ToolChoice = Literal["auto", "none", "required", "function"]


class ChatCapabilities(BaseModel):
    """One model's optional features; the defaults are what every Qwen chat model takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: bool = False
    # `function`: a named tool ({"type": "function", "function": {"name": ...}}).
    tool_choice: frozenset[ToolChoice] = frozenset()
    parallel_tool_calls: bool = False
    json_object: bool = False
    json_schema: bool = False
    vision: bool = False  # image parts in user messages: the multimodal endpoint
    seed: bool = True
    stop: bool = True
    top_p: bool = True
    presence_penalty: bool = True
    frequency_penalty: bool = False  # DashScope's native API has none
    max_n: int = Field(default=1, ge=1, le=4)  # choices per request (SDK docstring: 1-4)
    logprobs: bool = False
    max_top_logprobs: int = Field(default=0, ge=0, le=5)
    thinks: bool = False  # thinking-only (QwQ): no structured output, no forced tool


_TOOLS = {"tools": True, "tool_choice": frozenset({"auto", "none", "function"}),
          "parallel_tool_calls": True}
_LOGPROBS = {"logprobs": True, "max_top_logprobs": 5}


def default_capabilities() -> dict[str, ChatCapabilities]:
    caps = ChatCapabilities
    return {
        # json_object: section 2.5's list; json_schema: "only some qwen-plus models".
        "qwen-turbo": caps(**_TOOLS, **_LOGPROBS, json_object=True),
        "qwen-plus": caps(**_TOOLS, **_LOGPROBS, json_object=True, json_schema=True, max_n=4),
        "qwen-max": caps(**_TOOLS, **_LOGPROBS, json_object=True),
        # Thinking-only: in thinking mode a forced tool is not supported (section 2.1).
        "qwq-plus": caps(tools=True, tool_choice=frozenset({"auto", "none"}),
                         parallel_tool_calls=True, thinks=True),
        # Vision (section 3); Qwen3-VL also takes tools and structured output (2026 docs).
        "qwen-vl-max": caps(vision=True),
        "qwen-vl-plus": caps(vision=True),
        "qwen3-vl-plus": caps(**_TOOLS, vision=True, json_object=True, json_schema=True),
        "qwen3-vl-flash": caps(**_TOOLS, vision=True, json_object=True, json_schema=True),
    }


# Parameters a model either takes or not, by the capability of the same name.
_SWITCHES = ("seed", "stop", "top_p", "presence_penalty", "frequency_penalty",
             "parallel_tool_calls", "logprobs")


def refusals(caps: ChatCapabilities, model: str, parameters: dict, *, images: bool,
             thinking: bool) -> list[dict]:
    """What `model` does not take of the parameters sent, as [{field, message}] naming each.
    `images`: a message has image parts; `thinking`: the request runs in thinking mode."""
    errors = []

    def refuse(field: str, what: str) -> None:
        errors.append({"field": field, "message": f"{what} is not supported by {model}"})

    for name in _SWITCHES:
        if name in parameters and not getattr(caps, name):
            refuse(name, name)
    if "tools" in parameters and not caps.tools:
        refuse("tools", "tool calling")
    choice = parameters.get("tool_choice")
    if choice is not None:
        kind = choice if isinstance(choice, str) else "function"
        if "tools" not in parameters and kind != "none":
            errors.append({"field": "tool_choice", "message": "tool_choice needs tools"})
        elif caps.tools and kind not in caps.tool_choice:
            refuse("tool_choice", f"tool_choice {kind!r}" + (" in thinking mode"
                                                            if thinking or caps.thinks else ""))
    kind = (parameters.get("response_format") or {}).get("type")
    if kind in ("json_object", "json_schema"):
        if not getattr(caps, kind):
            refuse("response_format", f"response_format {kind}")
        elif thinking or caps.thinks:
            refuse("response_format", f"response_format {kind} in thinking mode")
    if images and not caps.vision:
        errors.append({"field": "messages", "message": f"{model} takes no image input; use "
                                                       "a vision model"})
    n = parameters.get("n", 1)
    if n > caps.max_n:
        errors.append({"field": "n", "message": f"n > {caps.max_n} is not supported by {model}"
                       if caps.max_n > 1 else f"n > 1 is not supported by {model}"})
    top = parameters.get("top_logprobs")
    if top is not None and caps.logprobs and top > caps.max_top_logprobs:
        errors.append({"field": "top_logprobs",
                       "message": f"at most {caps.max_top_logprobs} for {model}"})
    return errors
