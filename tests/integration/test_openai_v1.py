"""The OpenAI-compatible /v1 surface, driven by the official `openai` SDK against gunicorn and a
real worker: OpenAI's objects exactly, the SDK's own exception classes, and the same job, usage
row, rate-limit budget and idempotency as /api/bailian/chat/completions."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import openai
import pytest
import requests

from common.jobs.models import JobStatus
from tests.support import processes
from tests.support.jobs import directive, usage_rows, wait_for_job


def _sdk(base: str, token: str) -> openai.OpenAI:
    # No SDK retries: each test says exactly how many requests it makes.
    return openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def web(base_env, log_dir, platform):
    port = processes.free_port()
    proc = processes.gunicorn(base_env, log_dir, port, name="openai-web", workers=1)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
def sdk(web, accounts) -> openai.OpenAI:
    _, headers = accounts.headers("premium")
    return _sdk(web, headers["Authorization"].removeprefix("Bearer "))


def test_a_completion_is_openais_object_and_the_platforms_job(sdk, database, settings):
    raw = sdk.chat.completions.with_raw_response.create(
        model="qwen-turbo", messages=[{"role": "user", "content": "hello v1"}],
        max_completion_tokens=64, user="end-user-7", temperature=0.5)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Echo: hello v1"
    assert completion.choices[0].finish_reason == "stop"

    job_id = raw.headers["X-Job-ID"]
    assert completion.id == f"chatcmpl-{job_id}"
    assert int(raw.headers["X-RateLimit-Remaining"]) >= 0 and raw.headers["X-RateLimit-Limit"]
    job = wait_for_job(database, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.request["parameters"]["max_tokens"] == 64
    [row] = usage_rows(database, job_id)
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (
        completion.usage.prompt_tokens, completion.usage.completion_tokens,
        completion.usage.total_tokens)
    prices = settings.prices["qwen-turbo"]
    assert row.cost == (Decimal(row.input_tokens) * prices["input"]
                        + Decimal(row.output_tokens) * prices["output"]) / 1000


def test_an_idempotency_key_replays_the_same_job(sdk, database):
    key = f"v1-{uuid.uuid4().hex}"
    first = sdk.chat.completions.with_raw_response.create(
        model="qwen-turbo", messages=[{"role": "user", "content": "once"}],
        extra_headers={"Idempotency-Key": key})
    again = sdk.chat.completions.with_raw_response.create(
        model="qwen-turbo", messages=[{"role": "user", "content": "once"}],
        extra_headers={"Idempotency-Key": key})
    assert first.headers["X-Job-ID"] == again.headers["X-Job-ID"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.parse().choices[0].message.content == "Echo: once"
    assert len(usage_rows(database, first.headers["X-Job-ID"])) == 1


@pytest.mark.parametrize(("extra", "param"), [
    ({"temperature": 5}, "temperature"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "banana"}}}]}, "tools.0.function.parameters"),
    ({"logprobs": True, "top_logprobs": 9}, "top_logprobs"),
    ({"n": 2}, "n"),
    ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens"),
    ({"made_up_parameter": 1}, "made_up_parameter"),
])
def test_invalid_or_unsupported_parameters_are_bad_requests_naming_them(sdk, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="qwen-turbo",
                                    messages=[{"role": "user", "content": "x"}],
                                    extra_body=extra)
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


def test_a_bad_message_names_the_field(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="qwen-turbo", messages=[{"role": "wizard",
                                                                   "content": "x"}])
    assert caught.value.body["param"].startswith("messages.0")


def test_an_unknown_model_is_model_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-17")


def test_a_bad_token_is_an_authentication_error(web):
    with pytest.raises(openai.AuthenticationError) as caught:
        _sdk(web, "not-a-token").chat.completions.create(
            model="qwen-turbo", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "authentication_error"
    assert caught.value.body["code"] == "invalid_api_key"


def test_upstream_failures_keep_their_status_and_code(sdk, database):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="qwen-turbo", messages=[
            {"role": "user", "content": f"bad words {directive(fault='inspection')}"}])
    assert refused.value.body["code"] == "DataInspectionFailed"
    assert refused.value.response.headers["x-should-retry"] == "false"
    job_id = refused.value.response.headers["X-Job-ID"]
    assert wait_for_job(database, job_id).status == JobStatus.FAILED

    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model="qwen-turbo", messages=[
            {"role": "user", "content": f"always 500 {directive(fault=500)}"}])
    assert failed.value.status_code == 502
    assert failed.value.body["type"] == "api_error"


def test_models_lists_what_this_deployment_enables(sdk, settings):
    models = {m.id: m for m in sdk.models.list()}
    assert set(models) == set(settings.chat_models) | set(settings.image_models) | set(
        settings.embedding_models)
    assert models["qwen-turbo"].model_extra["kind"] == "chat"
    assert models["wanx-v1"].model_extra["kind"] == "image"
    assert sdk.models.retrieve("qwen-turbo").id == "qwen-turbo"


def test_the_v1_chat_shares_the_api_chat_budget(base_env, log_dir, platform, accounts):
    env = {**base_env, "RATE_LIMITS": json.dumps(
        {"chat": {t: "2/minute" for t in ("default", "premium", "admin")},
         "generation": {t: "100/minute" for t in ("default", "premium", "admin")}})}
    port = processes.free_port()
    proc = processes.gunicorn(env, log_dir, port, name="openai-limited-web", workers=1)
    try:
        _, headers = accounts.headers("default")
        base = f"http://127.0.0.1:{port}"
        first = requests.post(f"{base}/api/bailian/chat/completions", headers=headers, json={
            "model": "qwen-turbo", "messages": [{"role": "user", "content": "one"}]},
            timeout=30)
        assert first.status_code == 200
        sdk = _sdk(base, headers["Authorization"].removeprefix("Bearer "))
        sdk.chat.completions.create(model="qwen-turbo",
                                    messages=[{"role": "user", "content": "two"}])
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="qwen-turbo",
                                        messages=[{"role": "user", "content": "three"}])
        assert caught.value.body["code"] == "rate_limit_exceeded"
        assert caught.value.response.headers["Retry-After"]
    finally:
        proc.stop()
