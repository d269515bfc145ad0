"""Tool calls, structured output, logprobs, n and the multimodal endpoint, driven by the real
`dashscope` SDK (dashscope-protocol-2.md sections 2 and 3), and compatible mode's tools and
image parts by the `openai` SDK. No SDK code is patched."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
import requests
from dashscope import Generation, MultiModalConversation
from PIL import Image

from tests.support.jobs import directive
from tests.support.stack import EMULATOR_KEY

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city", "unit"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "string"}}, "required": ["zone"]}}}


def call(emu, **kwargs):
    kwargs.setdefault("model", "qwen-plus")
    return Generation.call(api_key=EMULATOR_KEY, base_address=emu.api_base,
                           result_format="message", **kwargs)


def png(width: int = 56, height: int = 28) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- tools ---------------------------------------------------------------------------------

def test_a_directive_chooses_the_tool_and_its_arguments_come_from_the_schema(emu):
    messages = [{"role": "user", "content": f"weather? {directive(tool='get_weather')}"}]
    response = call(emu, messages=messages, tools=[WEATHER, CLOCK])
    choice = response.output.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls
    assert choice.message.content == ""
    assert tool_call["type"] == "function" and tool_call["id"].startswith("call_")
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "x", "unit": "C"}
    assert response.usage.output_tokens > 0


def test_the_answer_after_tool_results_names_them(emu):
    messages = [
        {"role": "user", "content": f"weather? {directive(tool='get_weather')}"},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function", "index": 0,
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"}]
    response = call(emu, messages=messages, tools=[WEATHER])
    choice = response.output.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("stop",
                                                              "Tool results: 18 C, sunny")


def test_streamed_parallel_tool_calls_come_as_recorded_fragments(emu):
    marker = directive(tool="get_weather,get_time",
                       args='{"city": "Paris", "unit": "C"}|{"zone": "CET"}')
    chunks = list(call(emu, messages=[{"role": "user", "content": f"both {marker}"}],
                       tools=[WEATHER, CLOCK], parallel_tool_calls=True, stream=True,
                       incremental_output=True))
    fragments = [c.output.choices[0].message.tool_calls[0] for c in chunks]
    finishes = [c.output.choices[0].finish_reason for c in chunks]
    assert finishes == ["null"] * (len(chunks) - 1) + ["tool_calls"]
    assert [f["index"] for f in fragments] == [0, 0, 1, 1]
    assert fragments[0]["id"] and fragments[1]["id"] == "" and "name" not in fragments[1][
        "function"]
    calls: dict[int, str] = {}
    for fragment in fragments:
        calls[fragment["index"]] = calls.get(fragment["index"], "") + \
            fragment["function"]["arguments"]
    assert json.loads(calls[0]) == {"city": "Paris", "unit": "C"}
    assert json.loads(calls[1]) == {"zone": "CET"}
    outputs = [c.usage.output_tokens for c in chunks]
    assert outputs == sorted(outputs) and outputs[-1] > outputs[0]


def test_tool_choice_none_answers_in_text_and_a_named_tool_is_always_called(emu):
    messages = [{"role": "user", "content": f"hi {directive(tool='get_weather')}"}]
    plain = call(emu, messages=messages, tools=[WEATHER], tool_choice="none")
    assert plain.output.choices[0].finish_reason == "stop"
    forced = call(emu, messages=[{"role": "user", "content": "what time is it"}],
                  tools=[WEATHER, CLOCK],
                  tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert forced.output.choices[0].message.tool_calls[0]["function"]["name"] == "get_time"


def test_a_directive_naming_an_unknown_tool_is_a_bad_request(emu):
    response = call(emu, messages=[{"role": "user", "content": f"x {directive(tool='nope')}"}],
                    tools=[WEATHER])
    assert (response.status_code, response.code) == (400, "InvalidParameter")


# --- structured output, logprobs, n --------------------------------------------------------

def test_json_object_replies_parse_and_need_the_word_json(emu):
    response = call(emu, messages=[{"role": "user", "content": "Answer in JSON: hi"}],
                    response_format={"type": "json_object"})
    assert json.loads(response.output.choices[0].message.content) == {
        "echo": "Answer in JSON: hi"}
    refused = call(emu, messages=[{"role": "user", "content": "hi"}],
                   response_format={"type": "json_object"})
    assert refused.status_code == 400 and "json" in refused.message


def test_json_schema_replies_are_instances_of_the_schema(emu):
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    response = call(emu, messages=[{"role": "user", "content": "who"}], response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    assert json.loads(response.output.choices[0].message.content) == {"name": "x", "age": 1}


def test_logprobs_and_several_choices(emu):
    response = call(emu, messages=[{"role": "user", "content": "hi"}], logprobs=True,
                    top_logprobs=2, n=2)
    choices = response.output.choices
    assert [c["index"] for c in choices] == [0, 1]
    tokens = choices[0]["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == "Echo: hi"
    assert len(tokens[0]["top_logprobs"]) == 1  # as recorded: one although two were asked


# --- multimodal ----------------------------------------------------------------------------

def mm(emu, messages, **kwargs):
    kwargs.setdefault("model", "qwen-vl-max")
    return MultiModalConversation.call(api_key=EMULATOR_KEY, base_address=emu.api_base,
                                       messages=messages, **kwargs)


def test_the_sdk_uploads_a_local_image_and_the_emulator_sees_its_bytes(emu, tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(png(56, 28))
    response = mm(emu, [{"role": "user", "content": [{"image": f"file://{path}"},
                                                     {"text": "what is it"}]}])
    assert response.status_code == 200, response.message
    assert response.output.choices[0].message.content == [
        {"text": "Echo: what is it (images: 56x28 PNG)"}]
    usage = response.usage
    assert usage["image_tokens"] == 4 + 2  # 2x1 patches of 28 px: the minimum 4, and 2 more
    assert usage.input_tokens > usage["image_tokens"]
    assert emu.calls("upload_policy") == 1 and emu.calls("upload_file") == 1


def test_data_and_https_urls_count_image_tokens_without_fetching(emu):
    data_url = "data:image/png;base64," + base64.b64encode(png(280, 280)).decode()
    response = mm(emu, [{"role": "user", "content": [
        {"image": data_url}, {"image": "https://example.invalid/a.jpg"}, {"text": "two"}]}])
    assert response.status_code == 200, response.message
    assert response.usage["image_tokens"] == (100 + 2) + 1247
    text = response.output.choices[0].message.content[0]["text"]
    assert text == "Echo: two (images: 280x280 PNG, https://example.invalid/a.jpg)"


def test_a_streamed_multimodal_answer_has_list_content(emu):
    chunks = list(mm(emu, [{"role": "user", "content": [{"text": "stream me"}]}],
                     model="qwen3-vl-plus", stream=True, incremental_output=True))
    text = "".join(item["text"] for c in chunks for item in c.output.choices[0].message.content)
    assert text == "Echo: stream me"
    last = chunks[-1].usage
    assert last["input_tokens_details"]["text_tokens"] == last.input_tokens


def test_oss_urls_need_the_header_an_upload_and_a_vision_model(emu):
    body = {"model": "qwen-vl-max", "input": {"messages": [{"role": "user", "content": [
        {"image": "oss://dashscope-instant/never/uploaded.png"}, {"text": "?"}]}]}}
    url = f"{emu.api_base}/services/aigc/multimodal-generation/generation"
    auth = {"Authorization": f"Bearer {EMULATOR_KEY}"}
    for headers in (auth, {**auth, "X-DashScope-OssResourceResolve": "enable"}):
        refused = requests.post(url, json=body, headers=headers, timeout=5)
        assert refused.status_code == 400 and refused.json()["code"] == "InvalidParameter"
    text_model = requests.post(url, json={**body, "model": "qwen-plus"}, headers=auth, timeout=5)
    assert text_model.status_code == 400


# --- compatible mode (the openai SDK) ------------------------------------------------------

@pytest.fixture
def compatible(emu):
    return openai.OpenAI(api_key=EMULATOR_KEY, base_url=f"{emu.base}/compatible-mode/v1",
                         max_retries=0)


def test_compatible_mode_tool_calls_stream_as_openai_deltas_the_sdk_assembles(compatible):
    marker = directive(tool="get_time", args='{"zone": "UTC"}')
    with compatible.chat.completions.stream(
            model="qwen-plus", tools=[WEATHER, CLOCK],
            messages=[{"role": "user", "content": f"time? {marker}"}]) as stream:
        final = stream.get_final_completion()
    (tool_call,) = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert (tool_call.function.name, json.loads(tool_call.function.arguments)) == (
        "get_time", {"zone": "UTC"})
    answer = compatible.chat.completions.create(model="qwen-plus", tools=[CLOCK], messages=[
        {"role": "user", "content": f"time? {marker}"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call.model_dump()]},
        {"role": "tool", "tool_call_id": tool_call.id, "content": "noon"}])
    assert answer.choices[0].message.content == "Tool results: noon"


def test_compatible_mode_image_parts_count_in_prompt_tokens(compatible):
    data_url = "data:image/png;base64," + base64.b64encode(png(28, 28)).decode()
    parts = [{"type": "image_url", "image_url": {"url": data_url}},
             {"type": "text", "text": "see"}]
    seen = compatible.chat.completions.create(model="qwen-vl-max",
                                              messages=[{"role": "user", "content": parts}])
    assert seen.choices[0].message.content == "Echo: see (images: 28x28 PNG)"
    text_only = compatible.chat.completions.create(
        model="qwen-vl-max", messages=[{"role": "user", "content": "see"}])
    assert seen.usage.prompt_tokens == text_only.usage.prompt_tokens + 4 + 2
    with pytest.raises(openai.BadRequestError):
        compatible.chat.completions.create(model="qwen-plus",
                                           messages=[{"role": "user", "content": parts}])
