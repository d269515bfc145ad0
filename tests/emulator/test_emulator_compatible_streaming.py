"""OpenAI-compatible mode streaming, driven by the real `openai` SDK (and raw HTTP where the test
is about bytes): dashscope-protocol.md §4 and dashscope-protocol-2.md §1.5. No SDK code is
patched."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from emulator.models import NON_STREAMING_THINKING
from tests.support.jobs import directive
from tests.support.stack import EMULATOR_KEY

MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]
ANSWER = "Echo: Tell me about the sea"


@pytest.fixture
def emu(fresh_emulator):
    return fresh_emulator


@pytest.fixture
def client(emu):
    return openai.OpenAI(api_key=EMULATOR_KEY, base_url=f"{emu.base}/compatible-mode/v1",
                         max_retries=0)


def create(client, **kwargs):
    kwargs.setdefault("model", "qwen-plus")
    kwargs.setdefault("messages", MESSAGES)
    return client.chat.completions.create(**kwargs)


def raw_lines(emu, body: dict, messages=MESSAGES) -> list[str]:
    response = requests.post(f"{emu.base}/compatible-mode/v1/chat/completions",
                             json={"model": "qwen-plus", "messages": messages, **body},
                             headers={"Authorization": f"Bearer {EMULATOR_KEY}"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    text = response.content.decode()
    assert text.endswith("\n\n") and "\n\n\n" not in text  # one blank line after each event
    return text.split("\n\n")[:-1]


def test_stream_with_include_usage_ends_with_usage_then_done(emu):
    events = raw_lines(emu, {"stream": True, "stream_options": {"include_usage": True}})
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert {(c["id"], c["created"], c["object"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], "chat.completion.chunk")}
    assert chunks[0]["choices"][0]["delta"] == {"content": "", "role": "assistant"}
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (
        len(chunks) - 2) + ["stop"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_stream_without_include_usage_has_no_usage_chunk(emu):
    events = raw_lines(emu, {"stream": True})
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert all(c["choices"] and c["usage"] is None for c in chunks)
    assert events[-1] == "data: [DONE]"


def test_sdk_stream_usage_equals_the_non_stream_usage(client):
    whole = create(client)
    chunks = list(create(client, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_sdk_assembled_stream_equals_the_non_stream_answer(client):
    # The SDK's stream helper assembles chunks into a chat.completion (it refuses "length").
    whole = create(client)
    with client.chat.completions.stream(model="qwen-plus", messages=MESSAGES,
                                        stream_options={"include_usage": True}) as stream:
        assembled = stream.get_final_completion()
    assert assembled.choices[0].message.content == whole.choices[0].message.content == ANSWER
    assert assembled.choices[0].message.role == "assistant"
    assert assembled.choices[0].finish_reason == whole.choices[0].finish_reason == "stop"
    assert assembled.usage == whole.usage
    assert (assembled.model, assembled.object) == (whole.model, "chat.completion")


def test_length_finish_reason_in_a_stream(client):
    chunks = list(create(client, stream=True, max_tokens=3))
    assert "".join(c.choices[0].delta.content for c in chunks) == "Echo: Tell"
    assert chunks[-1].choices[0].finish_reason == "length"


def deltas(chunks, field):
    return [(c.choices[0].delta.model_extra or {}).get(field) if field == "reasoning_content"
            else c.choices[0].delta.content for c in chunks if c.choices]


def test_thinking_stream_sends_reasoning_deltas_before_content(client):
    chunks = list(create(client, model="qwq-plus", stream=True,
                         stream_options={"include_usage": True}))
    reasoning, content = deltas(chunks, "reasoning_content"), deltas(chunks, "content")
    thinking = [i for i, piece in enumerate(reasoning) if piece]
    speaking = [i for i, piece in enumerate(content) if piece]
    assert thinking and speaking and max(thinking) < min(speaking)
    assert all(content[i] is None for i in thinking)
    assert "".join(p for p in reasoning if p).endswith("I should echo it back.")
    assert "".join(p for p in content if p) == ANSWER
    usage = chunks[-1].usage
    assert usage.completion_tokens_details.reasoning_tokens == 20
    assert usage.completion_tokens == 20 + 8


def test_enable_thinking_and_budget_through_extra_body(client):
    chunks = list(create(client, stream=True, extra_body={"enable_thinking": True,
                                                          "thinking_budget": 4}))
    assert "".join(p for p in deltas(chunks, "reasoning_content") if p) == "The user wrote"


@pytest.mark.parametrize("model, extra", [("qwq-plus", {}),
                                          ("qwen-plus", {"enable_thinking": True})])
def test_thinking_without_a_stream_is_the_documented_400(client, model, extra):
    with pytest.raises(openai.BadRequestError) as raised:
        create(client, model=model, extra_body=extra)
    assert raised.value.code == "invalid_parameter_error"
    assert raised.value.body["message"] == NON_STREAMING_THINKING
    assert raised.value.body["type"] == "invalid_request_error"


def test_in_stream_error_raises_with_dashscope_code_after_the_first_chunks(client):
    prompt = f"Tell me about the sea {directive(fault='stream-error', at=3, error='inspection')}"
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in create(client, messages=[{"role": "user", "content": prompt}],
                            stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Echo"]
    assert raised.value.code == "data_inspection_failed"
    assert raised.value.message == "Input data may contain inappropriate content."


def test_in_stream_error_is_a_data_error_event_and_the_stream_ends(emu):
    prompt = f"Tell me about the sea {directive(fault='stream-error', at=2)}"
    events = raw_lines(emu, {"stream": True}, messages=[{"role": "user", "content": prompt}])
    assert len(events) == 2 and "[DONE]" not in events[-1]
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error == {"message": "An internal error has occured, please try again later or "
                     "contact service support.", "type": "server_error", "param": None,
                     "code": "InternalError"}
