"""`stamp=1`: every streamed content delta is the wall-clock time the emulator wrote it, on
native SSE (the real `dashscope` SDK) and compatible mode (the real `openai` SDK) alike, so a
client on the same machine can time each chunk from emitter to client. No SDK code is
patched."""

from __future__ import annotations

import itertools
import re
import time

import openai
import pytest
from dashscope import Generation

from tests.support.jobs import directive
from tests.support.stack import EMULATOR_KEY

STAMP = re.compile(r"<t=(\d+\.\d{6})>")
WORDS = "one two six ten red sea"  # "Echo", ":" and six words: eight content deltas


@pytest.fixture
def emu(fresh_emulator):
    return fresh_emulator


def stamps(text: str) -> list[float]:
    found = [float(t) for t in STAMP.findall(text)]
    assert STAMP.sub("", text) == ""  # each delta is a stamp and nothing else
    return found


def check_received(pairs: list[tuple[float, float]], interval_s: float) -> None:
    """Each stamp is before its arrival and close to it; stamps are spaced by the pacing."""
    assert len(pairs) == 8
    for sent, received in pairs:
        assert sent <= received + 0.001  # same clock; a millisecond for rounding
        assert received - sent < 0.5
    sent = [s for s, _ in pairs]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= interval_s * 0.9


def test_native_stream_deltas_are_emission_stamps(emu):
    prompt = f"{WORDS} {directive(stamp=1, chunk_ms=40)}"
    plain = Generation.call(model="qwen-plus", prompt=WORDS, api_key=EMULATOR_KEY,
                            base_address=emu.api_base, result_format="message")
    pairs, last = [], None
    for chunk in Generation.call(model="qwen-plus", prompt=prompt, api_key=EMULATOR_KEY,
                                 base_address=emu.api_base, result_format="message",
                                 stream=True, incremental_output=True):
        received = time.time()
        assert chunk.status_code == 200
        content = chunk.output.choices[0].message.content
        pairs += [(sent, received) for sent in stamps(content)]
        last = chunk
    check_received(pairs, 0.04)
    # Usage counts the real answer, not the stamps.
    assert last.usage.output_tokens == plain.usage.output_tokens
    assert last.usage.input_tokens == plain.usage.input_tokens


def test_cumulative_native_output_repeats_earlier_stamps(emu):
    prompt = f"{WORDS} {directive(stamp=1, chunk_ms=10)}"
    texts = [chunk.output.choices[0].message.content for chunk in Generation.call(
        model="qwen-plus", prompt=prompt, api_key=EMULATOR_KEY, base_address=emu.api_base,
        result_format="message", stream=True)]
    for before, after in itertools.pairwise(texts):
        assert after.startswith(before)  # each chunk keeps the stamps it was first sent with
    assert len(stamps(texts[-1])) == 8


def test_compatible_stream_deltas_are_emission_stamps(emu):
    client = openai.OpenAI(api_key=EMULATOR_KEY, base_url=f"{emu.base}/compatible-mode/v1",
                           max_retries=0)
    messages = [{"role": "user", "content": f"{WORDS} {directive(stamp=1, chunk_ms=40)}"}]
    plain = client.chat.completions.create(model="qwen-plus",
                                           messages=[{"role": "user", "content": WORDS}])
    pairs, usage = [], None
    for chunk in client.chat.completions.create(model="qwen-plus", messages=messages,
                                                stream=True,
                                                stream_options={"include_usage": True}):
        received = time.time()
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            pairs += [(sent, received) for sent in stamps(chunk.choices[0].delta.content)]
    check_received(pairs, 0.04)
    assert usage.completion_tokens == plain.usage.completion_tokens
    assert usage.prompt_tokens == plain.usage.prompt_tokens


def test_without_stamp_the_answer_is_the_text(emu):
    client = openai.OpenAI(api_key=EMULATOR_KEY, base_url=f"{emu.base}/compatible-mode/v1",
                           max_retries=0)
    pieces = [chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": WORDS}], stream=True)
        if chunk.choices]
    assert "".join(pieces) == f"Echo: {WORDS}"
