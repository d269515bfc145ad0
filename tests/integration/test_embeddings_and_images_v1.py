"""POST /v1/embeddings and POST /v1/images/generations, driven by the official `openai` SDK
against gunicorn, a real worker and the emulator: OpenAI's objects, the SDK's own decoding
and exception classes, one exact usage row per call, limits refused by name."""

from __future__ import annotations

import base64
import json
import math
import struct
from decimal import Decimal

import openai
import pytest
import requests

from common.jobs.models import JobKind, JobStatus
from tests.support import processes
from tests.support.jobs import directive, usage_rows, wait_for_job

PNG = b"\x89PNG\r\n\x1a\n"


def _sdk(base: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def web(base_env, log_dir, platform):
    port = processes.free_port()
    base = f"http://127.0.0.1:{port}"
    # Absolute image links, as a deployment behind its public address gives them.
    proc = processes.gunicorn({**base_env, "PUBLIC_BASE_URL": base}, log_dir, port,
                              name="embeddings-web", workers=1)
    yield base
    proc.stop()


@pytest.fixture
def sdk(web, accounts) -> openai.OpenAI:
    _, headers = accounts.headers("premium")
    return _sdk(web, headers["Authorization"].removeprefix("Bearer "))


def _norm(vector) -> float:
    return math.sqrt(sum(v * v for v in vector))


# --- embeddings -------------------------------------------------------------------------------

def test_embeddings_with_dimensions_are_openais_list_and_one_exact_usage_row(
        sdk, web, database, settings):
    raw = sdk.embeddings.with_raw_response.create(
        model="text-embedding-v4", input=["a cat", "a dog"], dimensions=256,
        encoding_format="float")
    result = raw.parse()
    assert result.object == "list" and result.model == "text-embedding-v4"
    assert [item.index for item in result.data] == [0, 1]
    assert [len(item.embedding) for item in result.data] == [256, 256]
    assert all(abs(_norm(item.embedding) - 1) < 1e-6 for item in result.data)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 4  # a, cat, a, dog

    job_id = raw.headers["X-Job-ID"]
    job = wait_for_job(database, job_id)
    assert (job.kind, job.status) == (JobKind.EMBEDDING, JobStatus.SUCCEEDED)
    assert "a cat" not in json.dumps(job.request)  # the texts are not kept
    assert job.request["parameters"] == {"dimension": 256}
    [row] = usage_rows(database, job_id)
    assert (row.kind, row.input_tokens, row.output_tokens, row.total_tokens) == (
        JobKind.EMBEDDING, 4, 0, 4)
    assert row.cost == Decimal(4) * settings.prices["text-embedding-v4"]["input"] / 1000
    assert row.upstream_request_id
    # The call is a job like any other on the jobs API.
    shown = requests.get(f"{web}/api/jobs/{job_id}", timeout=10,
                         headers={"Authorization": f"Bearer {sdk.api_key}"}).json()["data"]
    assert (shown["kind"], shown["status"], shown["usage"]["total_tokens"]) == (
        "embedding", "succeeded", 4)


def test_base64_is_little_endian_float32_that_the_sdk_decodes(sdk, web):
    floats = sdk.embeddings.create(model="text-embedding-v3", input="a cat", dimensions=64,
                                   encoding_format="float").data[0].embedding
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = sdk.embeddings.create(model="text-embedding-v3", input="a cat",
                                    dimensions=64).data[0].embedding
    assert decoded == pytest.approx(floats, abs=1e-6)
    raw = requests.post(f"{web}/v1/embeddings", headers={"Authorization": f"Bearer {sdk.api_key}"},
                        json={"model": "text-embedding-v3", "input": "a cat", "dimensions": 64,
                              "encoding_format": "base64"}, timeout=30).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack("<64f", packed)) == pytest.approx(floats, abs=1e-6)


def test_a_batch_up_to_the_models_limit_and_the_default_dimension(sdk):
    result = sdk.embeddings.create(model="text-embedding-v4",
                                   input=[f"row {i}" for i in range(10)], encoding_format="float")
    assert len(result.data) == 10 and {len(d.embedding) for d in result.data} == {1024}
    fixed = sdk.embeddings.create(model="text-embedding-v2", input="x", encoding_format="float")
    assert len(fixed.data[0].embedding) == 1536


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "text-embedding-v4", "input": ["x"] * 11}, "input"),
    ({"model": "text-embedding-v2", "input": ["x"] * 26}, "input"),
    ({"model": "text-embedding-v4", "input": []}, "input"),
    ({"model": "text-embedding-v4", "input": ""}, "input"),
    ({"model": "text-embedding-v4", "input": [[1, 2, 3]]}, "input"),
    ({"model": "text-embedding-v4", "input": "x", "dimensions": 100}, "dimensions"),
    ({"model": "text-embedding-v3", "input": "x", "dimensions": 2048}, "dimensions"),
    ({"model": "text-embedding-v2", "input": "x", "dimensions": 256}, "dimensions"),
    ({"model": "text-embedding-v4", "input": "x", "encoding_format": "int8"},
     "encoding_format"),
    ({"model": "text-embedding-v4", "input": "x", "text_type": "query"}, "text_type"),
])
def test_limits_and_unknown_parameters_are_400s_naming_them(sdk, database, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(**{k: body[k] for k in ("model", "input")},
                              extra_body={k: v for k, v in body.items()
                                          if k not in ("model", "input")})
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["param"] == param, caught.value.body
    assert "X-Job-ID" not in caught.value.response.headers  # refused before any job


def test_a_row_over_dashscopes_token_limit_is_a_400_naming_input_and_bills_nothing(
        sdk, database):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model="text-embedding-v4", input=["fine", "word " * 9000])
    assert caught.value.body["param"] == "input"
    assert "Range of input length" in caught.value.body["message"]
    job_id = caught.value.response.headers["X-Job-ID"]
    assert wait_for_job(database, job_id).status == JobStatus.FAILED
    assert usage_rows(database, job_id) == []


def test_upstream_failures_are_openai_errors(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.embeddings.create(model="text-embedding-v4",
                              input=f"boom {directive(fault=500)}")
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "api_error"


def test_an_unknown_embedding_model_is_model_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.embeddings.create(model="text-embedding-ada-002", input="x")
    assert caught.value.body["code"] == "model_not_found"


def test_models_lists_the_embedding_models(sdk, settings):
    models = {m.id: m.model_extra["kind"] for m in sdk.models.list()}
    assert {name: models[name] for name in settings.embedding_models} == {
        name: "embedding" for name in settings.embedding_models}


def test_an_api_key_embeds_and_its_usage_row_names_it(web, accounts, database):
    from tests.integration.test_api_keys import make_key

    _, login = accounts.headers("default")
    key = make_key(accounts.client, login)
    raw = _sdk(web, key["key"]).embeddings.with_raw_response.create(
        model="text-embedding-v4", input="keyed", encoding_format="float")
    [row] = usage_rows(database, raw.headers["X-Job-ID"])
    assert row.api_key_id == key["id"] and row.total_tokens == 2  # ceil(5 / 4)


def test_a_budget_that_cannot_cover_the_texts_refuses_before_any_job(
        web, accounts, database):
    from tests.integration.test_api_keys import make_key

    _, login = accounts.headers("default")
    # Reserved: 5e-7 CNY per UTF-8 byte (text-embedding-v4's input price).
    key = make_key(accounts.client, login, budget={"amount": "0.000001", "period": "month"})
    sdk = _sdk(web, key["key"])
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.embeddings.create(model="text-embedding-v4", input="x" * 10)
    assert caught.value.body["code"] == "insufficient_quota"
    assert "X-Job-ID" not in caught.value.response.headers
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-v4", input="x")
    [row] = usage_rows(database, raw.headers["X-Job-ID"])
    assert row.cost == Decimal("0.0000005")


def test_embeddings_have_their_own_rate_limit_and_an_image_past_the_wait_is_504(
        base_env, log_dir, platform, accounts):
    limits = {endpoint: {t: "100000/minute" for t in ("default", "premium", "admin")}
              for endpoint in ("chat", "generation")}
    limits["embeddings"] = {t: "2/minute" for t in ("default", "premium", "admin")}
    port = processes.free_port()
    proc = processes.gunicorn({**base_env, "RATE_LIMITS": json.dumps(limits),
                               "V1_WAIT_SECONDS": "1"}, log_dir, port,
                              name="embeddings-limited-web", workers=1)
    try:
        _, headers = accounts.headers("default")
        base = f"http://127.0.0.1:{port}"
        sdk = _sdk(base, headers["Authorization"].removeprefix("Bearer "))
        for _ in range(2):
            sdk.embeddings.create(model="text-embedding-v4", input="x")
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.embeddings.create(model="text-embedding-v4", input="x")
        assert caught.value.body["code"] == "rate_limit_exceeded"
        assert caught.value.response.headers["Retry-After"]
        # Chat keeps its own budget.
        assert sdk.chat.completions.create(
            model="qwen-turbo", messages=[{"role": "user", "content": "still"}]).choices
        # An image job not settled within V1_WAIT_SECONDS: OpenAI's error naming the job.
        with pytest.raises(openai.APIStatusError) as pending:
            sdk.images.generate(prompt=f"slow {directive(duration_s=5)}", model="wanx-v1")
        assert (pending.value.status_code, pending.value.body["code"]) == (504, "job_pending")
        assert pending.value.response.headers["X-Job-ID"] in pending.value.body["message"]
    finally:
        proc.stop()


# --- images -----------------------------------------------------------------------------------

def test_images_generate_returns_links_to_our_stored_copies(sdk, web, database):
    raw = sdk.images.with_raw_response.generate(prompt="a red fox", model="wanx-v1", n=2,
                                                size="1024x1024")
    result = raw.parse()
    assert result.created > 0 and len(result.data) == 2
    job_id = raw.headers["X-Job-ID"]
    for index, image in enumerate(result.data):
        assert image.url.startswith(f"{web}/api/jobs/{job_id}/images/{index}?")
        fetched = requests.get(image.url, timeout=10)  # no Authorization: the link is signed
        assert fetched.status_code == 200 and fetched.content.startswith(PNG)
        assert "_emulator" not in image.url
    job = wait_for_job(database, job_id)
    assert job.request["parameters"]["size"] == "1024*1024"
    [row] = usage_rows(database, job_id)
    assert (row.kind, row.image_count) == (JobKind.IMAGE, 2)


def test_images_generate_as_b64_json_and_with_the_default_model(sdk, settings, database):
    raw = sdk.images.with_raw_response.generate(prompt="a blue fox",
                                                response_format="b64_json")
    [image] = raw.parse().data
    assert image.url is None and base64.b64decode(image.b64_json).startswith(PNG)
    job = wait_for_job(database, raw.headers["X-Job-ID"])
    assert job.model == settings.v1_default_image_model


@pytest.mark.parametrize(("extra", "param"), [
    ({"quality": "hd"}, "quality"),
    ({"style": "vivid"}, "style"),
    ({"background": "transparent"}, "background"),
    ({"output_format": "webp"}, "output_format"),
    ({"size": "100x100"}, "size"),
    ({"size": "big"}, "size"),
    ({"n": 5}, "n"),
    ({"response_format": "png"}, "response_format"),
    ({"made_up": 1}, "made_up"),
])
def test_unsupported_image_parameters_are_400s_naming_them(sdk, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(prompt="x", model="wanx2.1-t2i-turbo", extra_body=extra)
    assert caught.value.body["param"] == param, caught.value.body
    assert "X-Job-ID" not in caught.value.response.headers


def test_neutral_openai_values_are_accepted(sdk):
    result = sdk.images.generate(prompt="a grey fox", model="wanx2.1-t2i-turbo",
                                 quality="standard", size="1024x1024")
    assert result.data[0].url


def test_an_unknown_image_model_is_model_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.images.generate(prompt="x", model="dall-e-3")
    assert caught.value.body["code"] == "model_not_found"


def test_a_failed_image_task_is_an_openai_error(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.images.generate(prompt=f"no {directive(fault='inspection')}", model="wanx-v1")
    assert caught.value.status_code == 400
    assert caught.value.body["code"] == "DataInspectionFailed"


def test_an_in_request_job_whose_caller_died_is_never_queued_and_ends_at_its_deadline(
        platform, lifecycle, settings, accounts, database):
    from sqlalchemy import update

    from common.jobs import submission
    from common.jobs.embedding import EmbeddingCall
    from common.jobs.models import Job

    call = EmbeddingCall(model="text-embedding-v4", texts=["lost"], dimension=1024,
                         encoding_format="float")
    view, _ = submission.submit(lifecycle=lifecycle, settings=settings,
                                user_id=accounts.create()["id"], kind=JobKind.EMBEDDING,
                                model=call.model, request=call.job_request(), in_request=True)
    assert (view.status, view.attempts) == (JobStatus.RUNNING, 1)
    assert (view.deadline_at - view.created_at).total_seconds() == \
        settings.upstream_timeout_seconds + submission.IN_REQUEST_MARGIN_SECONDS
    # The web process died mid-call: the running sweeper (beat) ends the job at its deadline.
    with database.transaction() as conn:
        conn.execute(update(Job).where(Job.id == view.id).values(
            deadline_at=view.created_at))
    job = wait_for_job(database, view.id, timeout=30)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "deadline_exceeded")
    assert (job.attempts, job.enqueued_at) == (1, None)  # no worker was ever given it
    assert usage_rows(database, view.id) == []
