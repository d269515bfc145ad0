"""Small real images for upload tests, made with Pillow."""

from __future__ import annotations

import io
import random

from PIL import Image


def png(width: int = 32, height: int = 32, colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def noisy_png(width: int, height: int, seed: int = 1) -> bytes:
    """A PNG that does not compress: about width x height x 3 bytes."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 32, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def upload(client, headers: dict, data: bytes, filename: str = "cat.png"):
    return client.post("/api/files", headers=headers,
                       data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")
