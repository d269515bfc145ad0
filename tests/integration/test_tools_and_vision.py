"""Tools, structured output, images and the remaining parameters through /v1 (the official
`openai` SDK, and LangChain's ChatOpenAI as a second real client) and /api, against gunicorn,
a real worker and the emulator: the same request model and validation on both surfaces, the
SDKs' own helpers assembling what we answer, and usage rows that are exactly what DashScope
reported."""

from __future__ import annotations

import base64
import io
import json
import random
from decimal import Decimal

import openai
import pytest
import requests
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from PIL import Image
from pydantic import BaseModel
from sqlalchemy import func, select

from common.jobs.models import Job
from tests.support import processes
from tests.support.jobs import directive, usage_rows, wait_for_job

IMAGE_LIMIT = 65536  # CHAT_IMAGE_MAX_BYTES of this module's web process
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "string"}}, "required": ["zone"]}}}


@pytest.fixture(scope="module")
def web(base_env, log_dir, platform):
    port = processes.free_port()
    proc = processes.gunicorn({**base_env, "CHAT_IMAGE_MAX_BYTES": str(IMAGE_LIMIT)}, log_dir,
                              port, name="tools-web", workers=1)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
def user(accounts):
    account, headers = accounts.headers("premium")
    return account, headers


@pytest.fixture
def sdk(web, user) -> openai.OpenAI:
    token = user[1]["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(base_url=f"{web}/v1", api_key=token, max_retries=0, timeout=60)


def png_data_url(width: int, height: int, *, noise: bool = False) -> str:
    image = Image.new("RGB", (width, height), (10, 120, 200))
    if noise:  # incompressible, so the file is about width x height x 3 bytes
        image = Image.frombytes("RGB", (width, height),
                                random.Random(0).randbytes(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def exact_usage(database, settings, job_id: str, usage) -> None:
    """The job's one usage row is what the completion reported, and costs what it should."""
    [row] = usage_rows(database, job_id)
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (
        usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    details = usage.prompt_tokens_details
    image_tokens = details.model_dump().get("image_tokens") or 0 if details else 0
    assert row.image_tokens == image_tokens
    prices = settings.prices[row.model]
    assert row.cost == ((Decimal(row.input_tokens) * prices["input"]
                         + Decimal(row.output_tokens) * prices["output"]) / 1000
                        ).quantize(Decimal("0.00000001"))


def jobs_of(database, account) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Job)
                              .where(Job.user_id == account["id"]))


# --- tools ---------------------------------------------------------------------------------

def test_a_tool_round_trip_call_result_answer(sdk, web, user, database, settings):
    messages = [{"role": "user", "content": f"Weather in Paris? {directive(tool='get_weather')}"}]
    first = sdk.chat.completions.with_raw_response.create(model="qwen-plus", messages=messages,
                                                          tools=[WEATHER, CLOCK])
    called = first.parse()
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "x"}
    exact_usage(database, settings, first.headers["X-Job-ID"], called.usage)
    # A poll of the job shows the same calls.
    polled = requests.get(f"{web}/api/jobs/{first.headers['X-Job-ID']}", headers=user[1],
                          timeout=10).json()["data"]
    assert polled["result"]["choices"][0]["message"]["tool_calls"][0]["id"] == tool_call.id

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": tool_call.id, "content": "18 C and sunny"}]
    second = sdk.chat.completions.with_raw_response.create(model="qwen-plus", messages=messages,
                                                           tools=[WEATHER, CLOCK])
    answer = second.parse()
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "Tool results: 18 C and sunny"
    assert not answer.choices[0].message.tool_calls
    exact_usage(database, settings, second.headers["X-Job-ID"], answer.usage)


def test_streamed_parallel_tool_calls_are_assembled_by_the_sdk(sdk, database, settings):
    marker = directive(tool="get_weather,get_time", args='{"city": "Oslo"}|{"zone": "CET"}')
    with sdk.chat.completions.stream(
            model="qwen-plus", messages=[{"role": "user", "content": f"both {marker}"}],
            tools=[WEATHER, CLOCK], parallel_tool_calls=True,
            stream_options={"include_usage": True}) as stream:
        deltas = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(deltas) == 4  # two fragments per call, as DashScope sends them
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {"zone": "CET"})]
    assert all(c.id.startswith("call_") for c in message.tool_calls)
    job_id = final.id.removeprefix("chatcmpl-")
    wait_for_job(database, job_id)
    exact_usage(database, settings, job_id, final.usage)


def test_a_langchain_agent_calls_a_tool_through_v1(web, user, database):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"{city}: 21 C"

    model = ChatOpenAI(model="qwen-plus", base_url=f"{web}/v1", max_retries=0,
                       api_key=user[1]["Authorization"].removeprefix("Bearer "))
    agent = model.bind_tools([get_weather])
    marker = directive(tool="get_weather", args='{"city": "Rome"}')
    conversation = [HumanMessage(f"Weather? {marker}")]
    for _ in range(3):  # the agent loop: call the model, run the tools it asks for
        reply = agent.invoke(conversation)
        conversation.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            conversation.append(ToolMessage(get_weather.invoke(call["args"]),
                                            tool_call_id=call["id"]))
    assert conversation[1].tool_calls[0]["args"] == {"city": "Rome"}
    assert reply.content == "Tool results: Rome: 21 C"
    assert reply.usage_metadata["total_tokens"] > 0


# --- structured output ---------------------------------------------------------------------

def test_json_object_output_parses(sdk, database, settings):
    raw = sdk.chat.completions.with_raw_response.create(
        model="qwen-turbo", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Reply in JSON: ping"}])
    completion = raw.parse()
    assert json.loads(completion.choices[0].message.content) == {"echo": "Reply in JSON: ping"}
    exact_usage(database, settings, raw.headers["X-Job-ID"], completion.usage)


class Person(BaseModel):
    name: str
    age: int


def test_json_schema_output_parses_into_the_sdks_model(sdk):
    parsed = sdk.chat.completions.parse(model="qwen-plus", response_format=Person,
                                        messages=[{"role": "user", "content": "who?"}])
    assert parsed.choices[0].message.parsed == Person(name="x", age=1)


def test_json_schema_where_the_model_has_none_is_a_400_naming_it(sdk, user, database):
    before = jobs_of(database, user[0])
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.parse(model="qwen-turbo", response_format=Person,
                                   messages=[{"role": "user", "content": "who?"}])
    assert refused.value.body["param"] == "response_format"
    assert "qwen-turbo" in refused.value.body["message"]
    assert jobs_of(database, user[0]) == before


# --- vision --------------------------------------------------------------------------------

def test_a_data_url_image_is_uploaded_by_the_worker_and_priced(sdk, emulator, database,
                                                               settings):
    uploads_before = emulator.calls("upload_file")
    raw = sdk.chat.completions.with_raw_response.create(model="qwen-vl-max", messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url",
                                      "image_url": {"url": png_data_url(56, 28)}}]}])
    completion = raw.parse()
    # The emulator read the uploaded bytes from its oss:// object.
    assert completion.choices[0].message.content == "Echo: what is this? (images: 56x28 PNG)"
    assert emulator.calls("upload_file") == uploads_before + 1
    assert completion.usage.prompt_tokens_details.model_dump()["image_tokens"] == 6
    job_id = raw.headers["X-Job-ID"]
    exact_usage(database, settings, job_id, completion.usage)
    job = wait_for_job(database, job_id)
    assert job.request["messages"][0]["content"][1]["image_url"]["url"].startswith("data:")


def test_an_https_image_is_passed_on_never_fetched(sdk, emulator, database, settings):
    uploads_before = emulator.calls("upload_file")
    url = "https://images.example.invalid/cat.jpg"
    raw = sdk.chat.completions.with_raw_response.create(model="qwen3-vl-plus", messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": "and this?"}]}])
    completion = raw.parse()
    assert completion.choices[0].message.content == f"Echo: and this? (images: {url})"
    assert emulator.calls("upload_file") == uploads_before
    exact_usage(database, settings, raw.headers["X-Job-ID"], completion.usage)


def test_a_streamed_vision_answer(sdk, database, settings):
    chunks = list(sdk.chat.completions.create(
        model="qwen-vl-plus", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": png_data_url(28, 28)}},
            {"type": "text", "text": "stream it"}]}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream it (images: 28x28 PNG)"
    job_id = chunks[0].id.removeprefix("chatcmpl-")
    wait_for_job(database, job_id)
    exact_usage(database, settings, job_id, chunks[-1].usage)


@pytest.mark.parametrize(("url", "problem"), [
    (None, f"larger than {IMAGE_LIMIT} bytes"),
    ("data:image/png;base64,bm90IGFuIGltYWdl", "not an image"),
    ("http://plain.example/a.png", "https URL"),
    ("data:image/png;base64,***", "not valid base64"),
])
def test_a_bad_image_is_refused_before_any_job_exists(sdk, user, database, url, problem):
    url = url or png_data_url(160, 160, noise=True)  # about 77 kB
    before = jobs_of(database, user[0])
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="qwen-vl-max", messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert refused.value.body["param"] == "messages.0.content.1.image_url.url"
    assert problem in refused.value.body["message"]
    assert jobs_of(database, user[0]) == before


def test_a_text_model_given_an_image_is_a_400(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]}])
    assert refused.value.body["param"] == "messages"
    assert "qwen-plus takes no image input" in refused.value.body["message"]


# --- the remaining parameters --------------------------------------------------------------

def test_logprobs_n_seed_stop_and_penalties_pass_through(sdk, database, settings):
    raw = sdk.chat.completions.with_raw_response.create(
        model="qwen-plus", messages=[{"role": "user", "content": "hi"}], n=2, logprobs=True,
        top_logprobs=2, seed=7, stop=["zzz"], presence_penalty=0.5, top_p=0.9)
    completion = raw.parse()
    assert [c.index for c in completion.choices] == [0, 1]
    tokens = completion.choices[1].logprobs.content
    assert "".join(t.token for t in tokens) == "Echo: hi"
    job = wait_for_job(database, raw.headers["X-Job-ID"])
    assert {k: job.request["parameters"][k] for k in ("n", "seed", "stop", "top_logprobs")} == {
        "n": 2, "seed": 7, "stop": ["zzz"], "top_logprobs": 2}
    exact_usage(database, settings, raw.headers["X-Job-ID"], completion.usage)


@pytest.mark.parametrize(("model", "extra", "param"), [
    ("qwen-turbo", {"frequency_penalty": 0.5}, "frequency_penalty"),
    ("qwen-turbo", {"n": 2}, "n"),
    ("qwen-vl-max", {"logprobs": True}, "logprobs"),
    ("qwen-vl-max", {"tools": [WEATHER]}, "tools"),
    ("qwen-plus", {"tools": [WEATHER], "tool_choice": "required"}, "tool_choice"),
    ("qwq-plus", {"tools": [WEATHER], "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
    ("qwen-vl-max", {"response_format": {"type": "json_object"}}, "response_format"),
    ("qwq-plus", {"response_format": {"type": "json_object"}}, "response_format"),
    ("qwen-plus", {"logprobs": True, "top_logprobs": 6}, "top_logprobs"),
    ("qwen-plus", {"top_logprobs": 2}, "top_logprobs"),
    ("qwen-plus", {"n": 2, "stream": True}, "n"),
    ("qwen-plus", {"tool_choice": "auto"}, "tool_choice"),
    ("qwen-plus", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "banana"}}}]}, "tools.0.function.parameters"),
    ("qwen-plus", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "string"}}}]}, "tools.0.function.parameters"),
    ("qwen-plus", {"tools": [WEATHER], "tool_choice": {
        "type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ("qwen-plus", {"response_format": {"type": "json_object"}}, "response_format"),
    ("qwen-plus", {"functions": [{"name": "f"}]}, "functions"),
])
def test_every_unsupported_parameter_is_a_400_naming_it(sdk, user, database, model, extra,
                                                        param):
    before = jobs_of(database, user[0])
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}],
                                    extra_body=extra)
    error = refused.value.body
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    assert jobs_of(database, user[0]) == before


def test_the_platform_api_takes_the_same_request_and_refuses_as_an_envelope(web, user):
    headers = user[1]
    refused = requests.post(f"{web}/api/bailian/chat/completions", headers=headers, timeout=30,
                            json={"model": "qwen-vl-max", "tools": [WEATHER],
                                  "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"field": "tools", "message": "tool calling is not supported by qwen-vl-max"}]
    called = requests.post(f"{web}/api/bailian/chat/completions", headers=headers, timeout=30,
                           json={"model": "qwen-max", "tools": [WEATHER], "messages": [
                               {"role": "user", "content": f"go {directive(tool='get_weather')}"}]})
    assert called.status_code == 200, called.text
    message = called.json()["data"]["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
