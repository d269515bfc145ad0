"""OpenAI's chat messages (what a job stores) in DashScope's native shapes, and DashScope's tool
calls back in OpenAI's (dashscope-protocol-2.md sections 2 and 3).

- Text generation takes `content` as a string; the assistant message that made tool calls is
  sent back with `content: ""` and its `tool_calls`; a `tool` message keeps `tool_call_id`.
- The multimodal endpoint takes `content` as a list of `{"text"}` and `{"image"}` items, in
  every message; an image is a URL DashScope fetches, or an `oss://` object the worker
  uploaded (a `data:` URL's bytes), which needs the resolve header.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[^;,]*)*;base64,",
                       re.IGNORECASE)


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def data_url_parts(url: str) -> tuple[str, str] | None:
    """(media type, base64 text) of a `data:<type>[;param=value]*;base64,<data>` URL."""
    header = _DATA_URL.match(url)
    return None if header is None else (header["type"].lower(), url[header.end():])


def data_url_content(url: str) -> tuple[bytes, str, str]:
    """(bytes, media type, a file name) of a data: URL the web tier already checked."""
    media_type, encoded = data_url_parts(url)
    extension = media_type.split("/", 1)[1].replace("jpeg", "jpg")
    return base64.b64decode(encoded), media_type, f"image.{extension}"


def has_images(messages: list[dict]) -> bool:
    return any(part.get("type") == "image_url" for m in messages
               if isinstance(m.get("content"), list) for part in m["content"])


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts one per line."""
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content if part.get("type") == "text")
    return content or ""


# The most tokens DashScope gives one image (vl_high_resolution_images; section 3.6).
IMAGE_TOKENS_MAX = 16_384


def worst_prompt_tokens(message: dict) -> int:
    """At most the tokens of a message (bar its template): a token per UTF-8 byte of text,
    tool calls and ids, and the most one image can take per image."""
    content = message.get("content")
    images = sum(1 for part in content if part.get("type") == "image_url") \
        if isinstance(content, list) else 0
    calls = json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""
    return (len(text_of(content).encode()) + len(calls.encode())
            + len(message.get("tool_call_id", "")) + images * IMAGE_TOKENS_MAX)


def text_generation(messages: list[dict]) -> list[dict]:
    return [_native(m, {"content": text_of(m.get("content"))}) for m in messages]


def multimodal(messages: list[dict], image: Callable[[str], str]) -> list[dict]:
    """The messages for the multimodal endpoint; `image` turns an image URL into the one sent."""
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            items = [{"text": part["text"]} if part.get("type") == "text"
                     else {"image": image(part["image_url"]["url"])} for part in content]
        else:
            items = [{"text": content}] if content else []
        converted.append(_native(message, {"content": items}))
    return converted


def _native(message: dict, content: dict) -> dict:
    native = {"role": message["role"], **content}
    if message.get("tool_calls"):
        native["tool_calls"] = [{**call, "index": i} for i, call in
                                enumerate(message["tool_calls"])]
    if message.get("tool_call_id"):
        native["tool_call_id"] = message["tool_call_id"]
    return native


def tool_calls(raw: list | None) -> list[dict]:
    """A non-streamed answer's tool calls, as OpenAI's message has them."""
    return [{"id": call.get("id") or f"call_{i}", "type": "function",
             "function": {"name": (call.get("function") or {}).get("name") or "",
                          "arguments": (call.get("function") or {}).get("arguments") or ""}}
            for i, call in enumerate(raw or [])]


def tool_call_deltas(raw: list | None) -> tuple[dict, ...]:
    """A stream chunk's tool-call fragments in OpenAI's chunk shape: the first fragment of a
    call has its id, type and name; later ones (DashScope: `"id": ""`) only the index and the
    next part of `arguments`."""
    deltas = []
    for fragment in raw or []:
        function = fragment.get("function") or {}
        delta: dict = {"index": int(fragment.get("index", 0))}
        if fragment.get("id"):
            delta["id"] = fragment["id"]
            delta["type"] = "function"
        part = {"arguments": function.get("arguments") or ""}
        if function.get("name"):
            part = {"name": function["name"], **part}
        delta["function"] = part
        deltas.append(delta)
    return tuple(deltas)


class ToolCallAssembler:
    """The whole tool calls of a stream, from its fragments (keyed by `index`)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict] = {}

    def add(self, deltas: tuple[dict, ...]) -> None:
        for delta in deltas:
            call = self.calls.setdefault(delta["index"], {
                "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = call["id"] or delta.get("id", "")
            function = delta.get("function") or {}
            call["function"]["name"] += function.get("name", "")
            call["function"]["arguments"] += function.get("arguments", "")

    def result(self) -> list[dict]:
        return [self.calls[i] for i in sorted(self.calls)]
