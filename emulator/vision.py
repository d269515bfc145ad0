"""The multimodal endpoint's inputs (dashscope-protocol-2.md section 3): list-form content,
images as URLs, `data:` URLs or uploaded `oss://` objects, and their image tokens.

An image the emulator can see (a data: URL, an uploaded object) costs what Qwen2.5-VL's rule
gives: a token per 28x28 pixels, at least 4 and at most 1,280 (16,384 with
vl_high_resolution_images), plus 2 for the image's start and end. An https URL is never
fetched: it costs the recorded 1,247 tokens (section 3.3).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math

from PIL import Image, UnidentifiedImageError

from emulator.errors import EmulatorError
from emulator.uploads import UploadStore

URL_IMAGE_TOKENS = 1247
VISION_PREFIXES = ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qvq", "qwen3.5", "qwen3.6")
# Newer models report input_tokens_details (section 3.2's "newer usage shape").
DETAILED_USAGE_PREFIXES = ("qwen3-vl", "qwen3.5", "qwen3.6")


@dataclasses.dataclass(frozen=True)
class SeenImage:
    source: str  # "url", "data" or "oss"
    tokens: int
    description: str  # what the reply says of it: its size and type, or its URL


def is_vision_model(model: str) -> bool:
    return model.startswith(VISION_PREFIXES)


def native_items(content) -> list:
    """OpenAI's content (a string, or text and image_url parts) as multimodal items."""
    if not isinstance(content, list):
        return [{"text": content}] if content else []
    items = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            items.append({"text": part.get("text", "")})
        elif kind == "image_url":
            items.append({"image": (part.get("image_url") or {}).get("url")})
        else:
            raise EmulatorError(400, "InvalidParameter", f"Unsupported content part: {kind}")
    return items


def flattened(messages: list[dict]) -> list[dict]:
    """The messages with list content as text (for the deterministic reply and counts)."""
    flat = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(item.get("text", "") for item in content if isinstance(item, dict))
        flat.append({**message, "content": content or ""})
    return flat


def images_of(messages: list[dict], *, model: str, uploads: UploadStore, headers,
              high_resolution: bool) -> list[SeenImage]:
    """Every image of the messages, checked as DashScope would (400 for what it cannot use)."""
    seen = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            raise EmulatorError(400, "InvalidParameter",
                                "The content of a multimodal message must be a list.")
        for item in content:
            if not isinstance(item, dict) or not ({"text", "image"} & set(item)):
                raise EmulatorError(400, "InvalidParameter",
                                    "Each content item needs text or image.")
            if "image" in item:
                seen.append(_image(item["image"], model, uploads, headers, high_resolution))
    return seen


def _image(url, model: str, uploads: UploadStore, headers, high_resolution: bool) -> SeenImage:
    if not isinstance(url, str) or not url:
        raise EmulatorError(400, "InvalidParameter", "The image must be a URL.")
    if url.startswith("oss://"):
        stored = uploads.resolve(url, model=model, headers=headers)
        return _seen("oss", stored.data, high_resolution)
    if url.startswith("data:"):
        try:
            data = base64.b64decode(url.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error, ValueError):
            raise EmulatorError(400, "InvalidParameter", "The base64 image is invalid.") from None
        return _seen("data", data, high_resolution)
    if url.startswith(("http://", "https://")):
        return SeenImage("url", URL_IMAGE_TOKENS, url)
    raise EmulatorError(400, "InvalidParameter", f"The provided URL {url[:64]} is not valid.")


def _seen(source: str, data: bytes, high_resolution: bool) -> SeenImage:
    try:
        with Image.open(io.BytesIO(data)) as image:
            (width, height), kind = image.size, image.format
    except (UnidentifiedImageError, OSError, ValueError):
        raise EmulatorError(400, "InvalidParameter",
                            "Download the media resource timed out or failed: not an image."
                            ) from None
    cap = 16_384 if high_resolution else 1_280
    tokens = min(cap, max(4, math.ceil(width / 28) * math.ceil(height / 28))) + 2
    return SeenImage(source, tokens, f"{width}x{height} {kind}")
