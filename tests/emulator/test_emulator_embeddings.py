"""The emulator's text embeddings, driven by the real SDKs: `dashscope.TextEmbedding.call`
on the native endpoint and the `openai` SDK on compatible mode (dashscope-protocol-2.md
section 4). No SDK code is patched."""

from __future__ import annotations

import math

import openai
import pytest
from dashscope import TextEmbedding

from tests.support.stack import EMULATOR_KEY


def embed(emu, texts, **kwargs):
    kwargs.setdefault("model", "text-embedding-v4")
    return TextEmbedding.call(input=texts, api_key=EMULATOR_KEY, base_address=emu.api_base,
                              **kwargs)


def norm(vector) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_native_vectors_are_unit_norm_deterministic_and_in_input_order(fresh_emulator):
    first = embed(fresh_emulator, ["a cat", "a dog"], dimension=256)
    assert first.status_code == 200
    rows = first.output["embeddings"]
    assert [row["text_index"] for row in rows] == [0, 1]
    assert [len(row["embedding"]) for row in rows] == [256, 256]
    assert all(abs(norm(row["embedding"]) - 1) < 1e-9 for row in rows)
    assert rows[0]["embedding"] != rows[1]["embedding"]
    again = embed(fresh_emulator, "a dog", dimension=256)
    assert again.output["embeddings"][0]["embedding"] == rows[1]["embedding"]
    assert first.usage["total_tokens"] == 4  # "a" "cat" "a" "dog"
    assert first.request_id


@pytest.mark.parametrize("model, dimension", [("text-embedding-v4", 1024),
                                              ("text-embedding-v3", 1024),
                                              ("text-embedding-v2", 1536)])
def test_each_model_has_its_default_dimension(fresh_emulator, model, dimension):
    response = embed(fresh_emulator, "hello", model=model)
    assert len(response.output["embeddings"][0]["embedding"]) == dimension


@pytest.mark.parametrize("texts, kwargs, fragment", [
    (["x"] * 11, {}, "should not be larger than 10"),
    ("x", {"dimension": 100}, "dimension should be one of"),
    ("x", {"model": "text-embedding-v3", "dimension": 2048}, "dimension should be one of"),
    ("word " * 9000, {}, "Range of input length"),
])
def test_limits_are_refused_with_400_invalid_parameter(fresh_emulator, texts, kwargs, fragment):
    response = embed(fresh_emulator, texts, **kwargs)
    assert (response.status_code, response.code) == (400, "InvalidParameter")
    assert fragment in response.message


def test_ten_rows_pass(fresh_emulator):
    response = embed(fresh_emulator, [f"row {i}" for i in range(10)])
    assert len(response.output["embeddings"]) == 10


def test_compatible_mode_float_and_base64_through_the_openai_sdk(fresh_emulator):
    client = openai.OpenAI(api_key=EMULATOR_KEY, max_retries=0,
                           base_url=f"{fresh_emulator.base}/compatible-mode/v1")
    floats = client.embeddings.create(model="text-embedding-v4", input=["a cat"],
                                      dimensions=64, encoding_format="float")
    decoded = client.embeddings.create(model="text-embedding-v4", input="a cat", dimensions=64)
    assert len(floats.data[0].embedding) == 64
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2
    native = embed(fresh_emulator, "a cat", dimension=64)
    assert native.output["embeddings"][0]["embedding"] == floats.data[0].embedding
    with pytest.raises(openai.BadRequestError, match="larger than 10"):
        client.embeddings.create(model="text-embedding-v4", input=["x"] * 11)
