"""Text embeddings (dashscope-protocol-2.md section 4): the native endpoint the SDK's
`TextEmbedding.call` uses and compatible mode's OpenAI-shaped one.

Vectors are deterministic (a function of model, text and dimension) and unit-norm, so tests
can compare them; usage counts the emulator's tokens of every text, as DashScope bills them.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
import random
import struct

from emulator.errors import EmulatorError
from emulator.text import count_tokens


@dataclasses.dataclass(frozen=True)
class EmbeddingModel:
    dimensions: tuple[int, ...]  # allowed, the default first
    max_rows: int
    max_tokens_per_row: int


# Section 4.1 (dimensions) and 4.2 (rows and tokens per request).
MODELS = {
    "text-embedding-v4": EmbeddingModel((1024, 2048, 1536, 768, 512, 256, 128, 64), 10, 8192),
    "text-embedding-v3": EmbeddingModel((1024, 768, 512, 256, 128, 64), 10, 8192),
    "text-embedding-v2": EmbeddingModel((1536,), 25, 2048),
    "text-embedding-v1": EmbeddingModel((1536,), 25, 2048),
}


def _invalid(message: str) -> EmulatorError:
    return EmulatorError(400, "InvalidParameter", message)


def check(model_name, texts, dimension) -> tuple[EmbeddingModel, list[str], int]:
    """The model, texts and dimension of a request, or DashScope's 400 for them."""
    model = MODELS.get(model_name) if isinstance(model_name, str) else None
    if model is None:
        raise EmulatorError(404, "ModelNotFound", f"Model not exist: {model_name}")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or \
            not all(isinstance(t, str) and t for t in texts):
        raise _invalid("<400> InternalError.Algo.InvalidParameter: input.texts should be a "
                       "non-empty list of non-empty strings")
    if len(texts) > model.max_rows:
        # Quoted from real responses (section 4.2).
        raise _invalid("<400> InternalError.Algo.InvalidParameter: Value error, batch size is "
                       f"invalid, it should not be larger than {model.max_rows}.: "
                       "input.contents")
    for text in texts:
        if count_tokens(text) > model.max_tokens_per_row:
            raise _invalid("<400> InternalError.Algo.InvalidParameter: Range of input length "
                           f"should be [1, {model.max_tokens_per_row}]")
    if dimension is None:
        dimension = model.dimensions[0]
    if isinstance(dimension, bool) or not isinstance(dimension, int) or \
            dimension not in model.dimensions:
        raise _invalid("<400> InternalError.Algo.InvalidParameter: dimension should be one of "
                       f"{sorted(model.dimensions, reverse=True)}")
    return model, texts, dimension


def vector(model: str, text: str, dimension: int) -> list[float]:
    """A unit-norm vector that depends only on the model, the text and the dimension."""
    seed = hashlib.sha256(f"{model}\0{dimension}\0{text}".encode()).digest()
    rng = random.Random(seed)
    values = [rng.random() - 0.5 for _ in range(dimension)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def tokens(texts: list[str]) -> int:
    return sum(count_tokens(text) for text in texts)


def native_body(model: str, texts: list[str], dimension: int, request_id: str) -> dict:
    return {"output": {"embeddings": [
        {"embedding": vector(model, text, dimension), "text_index": index}
        for index, text in enumerate(texts)]},
        "usage": {"total_tokens": tokens(texts)}, "request_id": request_id}


def compatible_body(model: str, texts: list[str], dimension: int, encoding: str,
                    request_id: str) -> dict:
    def encoded(values: list[float]):
        if encoding == "base64":  # little-endian float32, as OpenAI sends it
            return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        return values

    count = tokens(texts)
    return {"data": [{"embedding": encoded(vector(model, text, dimension)), "index": index,
                      "object": "embedding"} for index, text in enumerate(texts)],
            "model": model, "object": "list", "id": request_id,
            "usage": {"prompt_tokens": count, "total_tokens": count}}
