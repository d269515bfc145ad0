"""Native SSE streaming in depth, driven by the real `dashscope` SDK (and raw HTTP where the
test is about bytes): dashscope-protocol.md §3.4/§3.5 and dashscope-protocol-2.md §1.
No SDK code is patched."""

from __future__ import annotations

import itertools
import json
import re
import time

import pytest
import requests
from dashscope import Generation

from emulator.models import INCREMENTAL_ONLY, NON_STREAMING_THINKING
from tests.support.jobs import directive, wait_until
from tests.support.stack import EMULATOR_KEY

MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]
ANSWER = "Echo: Tell me about the sea"
# One recorded event: id, event name, the status comment, (the emulator's optional `status:`
# line), compact JSON, a blank line.
EVENT = re.compile(r"id:(\d+)\nevent:(result|error)\n:HTTP_STATUS/(\d+)\n(?:status:\d+\n)?"
                   r"data:(\{.*\})\n\n")


@pytest.fixture
def emu(fresh_emulator):
    return fresh_emulator


def call(emu, **kwargs):
    kwargs.setdefault("model", "qwen-plus")
    kwargs.setdefault("api_key", EMULATOR_KEY)
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("result_format", "message")
    return Generation.call(base_address=emu.api_base, **kwargs)


def stream(emu, **kwargs):
    return list(call(emu, stream=True, **kwargs))


def raw_stream(emu, parameters: dict, model="qwen-plus", messages=MESSAGES):
    """The response bytes of a streamed native call, as the SDK would request it."""
    response = requests.post(
        f"{emu.api_base}/services/aigc/text-generation/generation",
        json={"model": model, "parameters": parameters, "input": {"messages": messages}},
        headers={"Authorization": f"Bearer {EMULATOR_KEY}", "X-DashScope-SSE": "enable",
                 "Accept": "text/event-stream"}, timeout=10)
    return response, response.content.decode()


def events(body: str) -> list[tuple[int, str, int, dict]]:
    matches = list(EVENT.finditer(body))
    assert "".join(m.group(0) for m in matches) == body  # nothing outside the framing
    return [(int(m[1]), m[2], int(m[3]), json.loads(m[4])) for m in matches]


def message(chunk):
    return chunk.output.choices[0].message


# --- framing and plain streams --------------------------------------------------------------

def test_events_are_framed_byte_for_byte_as_recorded(emu):
    response, body = raw_stream(emu, {"result_format": "message", "incremental_output": True})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream;charset=UTF-8"
    parsed = events(body)
    assert [event_id for event_id, *_ in parsed] == list(range(1, len(parsed) + 1))
    assert {(name, status) for _, name, status, _ in parsed} == {("result", 200)}
    assert len({data["request_id"] for *_, data in parsed}) == 1
    assert '"finish_reason":"null"' in body and ": " not in body.replace(ANSWER[4:], "")
    first, last = parsed[0][3], parsed[-1][3]
    assert first["output"]["choices"][0] == {
        "message": {"content": "Echo", "role": "assistant"}, "finish_reason": "null"}
    assert list(first["usage"]) == ["total_tokens", "input_tokens", "output_tokens"]
    assert last["output"]["choices"][0] == {
        "message": {"content": "", "role": "assistant"}, "finish_reason": "stop"}
    assert "[DONE]" not in body


def test_non_streaming_answer_keeps_the_recorded_key_order(emu):
    response = requests.post(
        f"{emu.api_base}/services/aigc/text-generation/generation",
        json={"model": "qwen-plus", "parameters": {"result_format": "message"},
              "input": {"messages": MESSAGES}},
        headers={"Authorization": f"Bearer {EMULATOR_KEY}"}, timeout=10).json()
    assert list(response) == ["output", "usage", "request_id"]
    assert response["output"]["choices"][0] == {
        "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}
    assert list(response["output"]["choices"][0]) == ["finish_reason", "message"]
    assert list(response["usage"]) == ["total_tokens", "output_tokens", "input_tokens"]


def test_incremental_deltas_end_with_the_non_streaming_usage(emu):
    whole = call(emu)
    chunks = stream(emu, incremental_output=True)
    assert "".join(message(c).content for c in chunks) == whole.output.choices[0].message.content
    assert [c.output.choices[0].finish_reason for c in chunks] == ["null"] * (len(chunks) - 1) \
        + ["stop"]
    assert message(chunks[-1]).content == ""
    assert dict(chunks[-1].usage) == dict(whole.usage)
    outputs = [c.usage.output_tokens for c in chunks]
    assert outputs == sorted(outputs) and outputs[0] == 1  # cumulative, never per chunk


def test_cumulative_text_is_the_default_of_commercial_models(emu):
    # With incremental_output unset the SDK adds nothing and passes chunks through (§1.1).
    chunks = stream(emu)
    texts = [message(c).content for c in chunks]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert texts[0] == "Echo" and texts[-2] == texts[-1] == ANSWER
    assert chunks[-1].output.choices[0].finish_reason == "stop"


def test_cumulative_text_format_stream(emu):
    chunks = stream(emu, prompt="Stream me", messages=None, result_format="text")
    assert [c.output.text for c in chunks][-1] == "Echo: Stream me"
    assert chunks[1].output.text == "Echo:"
    assert [c.output.finish_reason for c in chunks][-2:] == ["null", "stop"]


def test_max_tokens_ends_the_stream_with_length(emu):
    chunks = stream(emu, incremental_output=True, max_tokens=3)
    assert "".join(message(c).content for c in chunks) == "Echo: Tell"
    assert chunks[-1].output.choices[0].finish_reason == "length"
    assert chunks[-1].usage.output_tokens == 3


def test_stream_options_is_accepted_and_ignored(emu):
    chunks = stream(emu, incremental_output=True, stream_options={"include_usage": True})
    assert all(c.usage.total_tokens for c in chunks)


# --- thinking models ----------------------------------------------------------------------

def reasoning_then_content(chunks):
    phases = [("reasoning" if message(c).reasoning_content else
               "content" if message(c).content else "final") for c in chunks]
    reasoning_count = phases.count("reasoning")
    assert phases == ["reasoning"] * reasoning_count + ["content"] * (len(phases) - 1
                                                                     - reasoning_count) \
        + ["final"]
    assert all(message(c).content == "" for c in chunks[:reasoning_count])
    return ("".join(message(c).reasoning_content for c in chunks),
            "".join(message(c).content for c in chunks))


def test_thinking_only_model_streams_reasoning_deltas_before_content(emu):
    chunks = stream(emu, model="qwq-plus", incremental_output=True)
    reasoning, content = reasoning_then_content(chunks)
    assert reasoning == 'The user wrote "Tell me about the sea". I should echo it back.'
    assert content == ANSWER
    usage = chunks[-1].usage
    assert usage.output_tokens_details["reasoning_tokens"] == 20
    assert usage.output_tokens == 20 + 8
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert chunks[-1].output.choices[0].finish_reason == "stop"


def test_thinking_stream_follows_the_recorded_shape(emu):
    _, body = raw_stream(emu, {"result_format": "message", "incremental_output": True,
                               "enable_thinking": True, "thinking_budget": 2})
    parsed = [data for *_, data in events(body)]
    assert parsed[0]["output"]["choices"][0]["message"] == {
        "content": "", "reasoning_content": "The", "role": "assistant"}
    assert list(parsed[0]["usage"]) == ["total_tokens", "output_tokens", "input_tokens",
                                        "output_tokens_details"]
    assert parsed[2]["output"]["choices"][0]["message"]["reasoning_content"] == ""
    assert parsed[-1]["output"]["choices"][0] == {
        "message": {"content": "", "reasoning_content": "", "role": "assistant"},
        "finish_reason": "stop"}
    # thinking_budget is an exact cap (part 2 §1.3).
    assert parsed[-1]["usage"]["output_tokens_details"] == {"reasoning_tokens": 2}


def test_hybrid_model_thinks_only_when_asked(emu):
    plain = stream(emu, incremental_output=True)
    assert "reasoning_content" not in message(plain[0])
    thinking = stream(emu, incremental_output=True, enable_thinking=True, thinking_budget=4)
    reasoning, content = reasoning_then_content(thinking)
    assert (reasoning, content) == ("The user wrote", ANSWER)


def test_qwen3_open_source_thinks_by_default_and_can_be_told_not_to(emu):
    reasoning, _ = reasoning_then_content(stream(emu, model="qwen3-32b", incremental_output=True))
    assert reasoning
    quiet = call(emu, model="qwen3-32b", enable_thinking=False)
    assert quiet.status_code == 200 and "reasoning_content" not in quiet.output.choices[0].message


@pytest.mark.parametrize("kwargs", [{"model": "qwq-plus"}, {"model": "qwen3-32b"},
                                    {"model": "qwen-plus", "enable_thinking": True}])
def test_thinking_without_a_stream_is_the_documented_400(emu, kwargs):
    response = call(emu, **kwargs)
    assert (response.status_code, response.code, response.message) == (
        400, "InvalidParameter", NON_STREAMING_THINKING)


def test_sdk_turns_cumulative_requests_into_deltas_for_incremental_only_models(emu):
    # The SDK sends incremental_output: true and merges (§1.1), so the caller still sees
    # cumulative text, reasoning included.
    chunks = stream(emu, model="qwq-plus", incremental_output=False)
    assert message(chunks[-1]).content == ANSWER
    assert message(chunks[-1]).reasoning_content.endswith("I should echo it back.")


def test_cumulative_output_is_refused_where_only_increments_exist(emu):
    response, body = raw_stream(emu, {"incremental_output": False}, model="qwq-plus")
    [(event_id, name, status, data)] = events(body)
    assert (response.status_code, event_id, name, status) == (200, 1, "error", 400)
    assert (data["code"], data["message"]) == ("InvalidParameter", INCREMENTAL_ONLY)


# --- errors -------------------------------------------------------------------------------

def test_invalid_request_sent_with_sse_is_a_single_error_event(emu):
    # Recorded (part 1 §3.5): HTTP 200, one `event:error` with `:HTTP_STATUS/400`.
    empty = [{"role": "user", "content": ""}]
    response, body = raw_stream(emu, {"result_format": "message"}, messages=empty)
    [(event_id, name, status, data)] = events(body)
    assert (response.status_code, event_id, name, status) == (200, 1, "error", 400)
    assert set(data) == {"code", "message", "request_id"}
    [only] = stream(emu, messages=empty)
    assert (only.status_code, only.code) == (400, "InvalidParameter")


def test_in_stream_error_at_a_chosen_chunk_carries_dashscope_code(emu):
    prompt = f"Tell me about the sea {directive(fault='stream-error', at=4, error='inspection')}"
    chunks = stream(emu, prompt=prompt, messages=None, incremental_output=True)
    assert [c.status_code for c in chunks] == [200, 200, 200, 400]
    assert "".join(message(c).content for c in chunks[:3]) == "Echo: Tell"
    assert (chunks[-1].code, chunks[-1].message) == (
        "DataInspectionFailed", "Input data may contain inappropriate content.")
    assert chunks[-1].output is None


def test_in_stream_error_status_line_sets_the_sdk_status(emu):
    prompt = f"x {directive(fault='stream-error', error=429, status=429)}"
    chunks = stream(emu, prompt=prompt, messages=None, incremental_output=True)
    assert (chunks[-1].status_code, chunks[-1].code) == (429, "Throttling.RateQuota")
    _, body = raw_stream(emu, {}, messages=[{"role": "user", "content": prompt}])
    assert events(body)[-1][:3] == (2, "error", 429) and "\nstatus:429\n" in body


def test_unknown_in_stream_error_name_is_refused(emu):
    [only] = stream(emu, prompt=f"x {directive(fault='stream-error', error='oops')}",
                    messages=None)
    assert (only.status_code, only.code) == (400, "InvalidParameter")
    assert "error=oops" in only.message


def test_in_stream_error_past_the_end_replaces_the_final_chunk(emu):
    prompt = f"Hi {directive(fault='stream-error', at=99)}"
    chunks = stream(emu, prompt=prompt, messages=None, incremental_output=True)
    assert "".join(message(c).content for c in chunks[:-1]) == "Echo: Hi"
    assert (chunks[-1].status_code, chunks[-1].code) == (400, "InternalError")


# --- pacing -------------------------------------------------------------------------------

def test_chunk_interval_holds_a_stream_open(emu):
    prompt = f"Tell me about the sea {directive(chunk_ms=150)}"
    started = time.monotonic()
    chunks = call(emu, prompt=prompt, messages=None, stream=True, incremental_output=True)
    first_at = (next(chunks), time.monotonic())[1]
    rest = list(chunks)
    assert time.monotonic() - first_at >= 0.15 * len(rest)
    assert first_at - started < 0.5 + 0.15  # the first chunk is not held back
    emu.configure(chunk_interval_ms=100)
    started = time.monotonic()
    assert len(stream(emu, prompt="one two", messages=None)) == 5  # Echo, :, one, two, end
    assert time.monotonic() - started >= 0.4


def test_stats_count_how_streams_ended(emu):
    stream(emu, incremental_output=True)
    stream(emu, prompt=f"x {directive(fault='stream-error')}", messages=None)
    prompt = f"Tell me about the sea {directive(chunk_ms=100)}"
    with requests.post(f"{emu.api_base}/services/aigc/text-generation/generation",
                       json={"model": "qwen-plus", "input": {"prompt": prompt}},
                       headers={"Authorization": f"Bearer {EMULATOR_KEY}",
                                "X-DashScope-SSE": "enable"}, stream=True, timeout=10) as held:
        assert next(held.iter_lines()) == b"id:1"
    # The emulator notices the hang-up at its next write.
    wait_until(lambda: emu.stats()["streams"] == {"completed": 1, "failed": 1,
                                                  "disconnected": 1}, timeout=5)
