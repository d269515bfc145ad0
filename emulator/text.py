"""Deterministic text generation with DashScope-like validation and token counts."""

from __future__ import annotations

import json
import math
import re

from emulator.directives import strip
from emulator.errors import EmulatorError

ROLES = {"system", "user", "assistant", "tool"}
# A token per CJK character, per punctuation mark, and per 4 letters of a word.
_TOKEN = re.compile(r"[\u3400-\u9fff]|[A-Za-z]+|\d|[^\sA-Za-z\d]")
MESSAGE_OVERHEAD_TOKENS = 4


def count_tokens(text: str) -> int:
    total = 0
    for piece in _TOKEN.findall(text):
        total += math.ceil(len(piece) / 4) if piece.isalpha() and piece.isascii() else 1
    return total


def split_tokens(text: str) -> list[str]:
    """The reply in token-sized pieces (whitespace kept with the following piece)."""
    pieces, position = [], 0
    for match in _TOKEN.finditer(text):
        word = text[position:match.end()]
        if match.group().isalpha() and match.group().isascii() and len(match.group()) > 4:
            lead = text[position:match.start()]
            chunks = [match.group()[i:i + 4] for i in range(0, len(match.group()), 4)]
            pieces.extend([lead + chunks[0], *chunks[1:]])
        else:
            pieces.append(word)
        position = match.end()
    if position < len(text) and pieces:
        pieces[-1] += text[position:]
    return pieces


def check_messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise EmulatorError(400, "InvalidParameter",
                            'Either "prompt" or "messages" must exist and cannot both be none.')
    for message in messages:
        # The assistant message that made tool calls is sent back with content "" (part 2
        # section 2.1); every other message needs text.
        calls = isinstance(message, dict) and message.get("role") == "assistant" and \
            isinstance(message.get("tool_calls"), list) and message["tool_calls"]
        if not isinstance(message, dict) or message.get("role") not in ROLES or \
                not isinstance(message.get("content"), str) or not (message["content"] or calls):
            raise EmulatorError(400, "InvalidParameter", "Role must be user or assistant and "
                                "Content length must be greater than 0")
    return messages


def check_parameters(parameters: dict, output_limit: int) -> None:
    """The ranges DashScope enforces (dashscope-protocol.md section 3.1)."""
    checks = [
        ("temperature", lambda v: 0 <= v < 2, "Temperature should be in [0.0, 2.0)"),
        ("top_p", lambda v: 0 < v <= 1, "Range of top_p should be (0.0, 1.0]"),
        ("top_k", lambda v: isinstance(v, int) and v >= 0, "top_k should be >= 0"),
        ("seed", lambda v: isinstance(v, int) and 0 <= v < 2**31, "seed out of range"),
        ("presence_penalty", lambda v: -2 <= v <= 2, "presence_penalty should be in [-2, 2]"),
        ("repetition_penalty", lambda v: v > 0, "repetition_penalty should be > 0"),
        ("max_tokens", lambda v: isinstance(v, int) and 0 < v <= output_limit,
         f"Range of max_tokens should be [1, {output_limit}]"),
        # The documented maximum is the model's CoT length, not captured (part 2 §1.5).
        ("thinking_budget", lambda v: isinstance(v, int) and v > 0,
         "thinking_budget should be greater than 0"),
    ]
    for name, valid, message in checks:
        value = parameters.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
            raise EmulatorError(400, "InvalidParameter", message)


def prompt_messages(body_input: dict) -> list[dict]:
    if isinstance(body_input.get("messages"), list):
        return check_messages(body_input["messages"])
    prompt = body_input.get("prompt")
    if isinstance(prompt, str) and prompt:
        return [{"role": "user", "content": prompt}]
    return check_messages(None)


def input_tokens(messages: list[dict], tools: list | None = None) -> int:
    """The messages' tokens (tool calls' names and arguments included) and the tools'."""
    calls = [json.dumps(m["tool_calls"]) for m in messages if m.get("tool_calls")]
    return sum(count_tokens(strip(m["content"])) + MESSAGE_OVERHEAD_TOKENS for m in messages) \
        + sum(count_tokens(c) for c in calls) + (count_tokens(json.dumps(tools)) if tools else 0)


def _last_user_text(messages: list[dict]) -> str:
    return next((strip(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")


def reasoning(messages: list[dict], budget: int | None) -> str:
    """The deterministic chain of thought; `thinking_budget` caps it exactly (§1.3 of part 2)."""
    last_user = _last_user_text(messages)
    thought = (f"The user wrote \"{last_user}\". I should echo it back." if last_user
               else "There is no question. I should greet the user.")
    if budget is not None:
        thought = "".join(split_tokens(thought)[:max(0, budget)])
    return thought


def reply(messages: list[dict], max_tokens: int | None) -> tuple[str, str]:
    """The deterministic answer and its finish reason ('stop', or 'length' when cut)."""
    last_user = _last_user_text(messages)
    text = f"Echo: {last_user}" if last_user else "Hello! How can I help you today?"
    if max_tokens is not None:
        pieces = split_tokens(text)
        if len(pieces) > max_tokens:
            return "".join(pieces[:max_tokens]), "length"
    return text, "stop"
