"""Function Compute offload end to end: the Flask app and a worker configured for FC, the local
function runner (fc/runner.py) serving the real handlers, and the DashScope emulator behind
them."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
import requests
from pydantic import SecretStr
from sqlalchemy import select

from common.billing.models import UsageRecord
from common.jobs.models import Job, JobStatus
from tests.support import processes
from tests.support.jobs import directive, usage_rows, wait_for_job
from tests.support.stack import EMULATOR_KEY

TOKEN = "fc-token-" + "x" * 32
CHAT = "/api/bailian/chat/completions"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def runner(log_dir, emulator):
    port = processes.free_port()
    env = {**os.environ, "DASHSCOPE_API_KEY": EMULATOR_KEY, "FC_AUTH_TOKEN": TOKEN,
           "DASHSCOPE_HTTP_BASE_URL": emulator.api_base, "UPSTREAM_TIMEOUT_SECONDS": "5"}
    proc = processes.Process("fc-runner", [str(processes.BIN / "python"), "-m", "fc.runner",
                                           "--port", str(port), "--hang-seconds", "3"],
                             env, log_dir).start()
    proc.wait_for_log("function runner listening")
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def fc_env(runner: str, token: str = TOKEN) -> dict[str, str]:
    return {"FC_QWEN_ENDPOINT": f"{runner}/qwen", "FC_WANX_ENDPOINT": f"{runner}/wanx",
            "FC_AUTH_TOKEN": token, "FC_TIMEOUT_SECONDS": "1", "JOB_MAX_ATTEMPTS": "3",
            "UPSTREAM_RETRY_BASE_SECONDS": "0.2", "UPSTREAM_RETRY_MAX_SECONDS": "0.5"}


@pytest.fixture(scope="module")
def fc_platform(platform, runner):
    """The shared worker steps aside for one configured for Function Compute."""
    platform.worker.stop()
    worker = processes.worker({**platform.env, **fc_env(runner)}, platform.log_dir,
                              name="worker-fc")
    yield worker
    worker.stop()
    platform.worker = processes.worker(platform.env, platform.log_dir)


@pytest.fixture(scope="module")
def fc_client(settings, runner, fc_platform):
    from web.app import create_app

    return create_app(settings.model_copy(update={
        "fc_qwen_endpoint": f"{runner}/qwen", "fc_wanx_endpoint": f"{runner}/wanx",
        "fc_auth_token": SecretStr(TOKEN)})).test_client()


def invocations(runner: str, function: str) -> int:
    return requests.get(f"{runner}/_runner/stats", timeout=5).json()["invocations"].get(
        function, 0)


def _chat(client, headers, content, **extra):
    return client.post(CHAT, headers={**headers, **extra}, json={
        "model": "qwen-plus", "messages": [{"role": "user", "content": content}]})


def test_chat_through_the_function_records_the_same_usage_as_the_direct_path(
        fc_client, client, accounts, database, runner, fc_platform, settings):
    _, headers = accounts.headers()
    before = invocations(runner, "qwen")
    through_fc = _chat(fc_client, headers, "same question", **{"X-Request-ID": "corr-fc-1"})
    assert through_fc.status_code == 200, through_fc.json
    assert invocations(runner, "qwen") == before + 1
    [fc_usage] = usage_rows(database, through_fc.json["data"]["job_id"])
    assert fc_usage.path == "fc"
    assert fc_usage.compute_cost > 0
    assert fc_usage.cost == Decimal("0.0008") * fc_usage.input_tokens / 1000 + \
        Decimal("0.002") * fc_usage.output_tokens / 1000 + fc_usage.compute_cost

    direct = _chat(client, headers, "same question")  # this app has no FC: the direct path
    assert direct.status_code == 200
    assert invocations(runner, "qwen") == before + 1
    [direct_usage] = usage_rows(database, direct.json["data"]["job_id"])
    assert direct_usage.path == "dashscope" and direct_usage.compute_cost == 0
    for field in ("input_tokens", "output_tokens", "total_tokens", "model", "kind"):
        assert getattr(fc_usage, field) == getattr(direct_usage, field)
    assert fc_usage.cost - fc_usage.compute_cost == direct_usage.cost
    assert through_fc.json["data"]["choices"] == direct.json["data"]["choices"]


def _runner_log(runner: str) -> list[dict]:
    return requests.get(f"{runner}/_runner/stats", timeout=5).json()["log"]


@pytest.mark.parametrize("shape", [None, "openai", "native", "native-text"],
                         ids=["seed", "openai", "native", "native-text"])
def test_each_accepted_data_shape_succeeds_with_exact_usage(fc_client, accounts, database,
                                                            runner, shape):
    _, headers = accounts.headers()
    knob = f"[[fc: shape={shape}]] " if shape else ""
    logged = len(_runner_log(runner))
    response = _chat(fc_client, headers, f"{knob}what shape is this {directive().id}")
    assert response.status_code == 200, response.json
    [invocation] = [e for e in _runner_log(runner)[logged:] if e["function"] == "qwen"]
    assert invocation["shape"] == shape
    produced = invocation["token_usage"]  # what the function's DashScope call counted
    assert produced["input_tokens"] > 0 and produced["output_tokens"] > 0

    data = response.json["data"]
    [choice] = data["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    [usage] = usage_rows(database, data["job_id"])
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        produced["input_tokens"], produced["output_tokens"], produced["total_tokens"])
    assert usage.path == "fc" and usage.compute_cost > 0
    assert usage.cost == Decimal("0.0008") * usage.input_tokens / 1000 + \
        Decimal("0.002") * usage.output_tokens / 1000 + usage.compute_cost


def test_data_of_no_accepted_shape_is_a_malformed_response(fc_client, accounts, database):
    _, headers = accounts.headers()
    response = _chat(fc_client, headers, f"[[fc: shape=broken]] {directive().id}", **ASYNC)
    job = wait_for_job(database, response.json["data"]["id"], timeout=60)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "FunctionMalformedResponse")
    assert "message" in job.error_message and "choices" in job.error_message
    assert usage_rows(database, job.id) == []


def test_generation_through_the_function(fc_client, accounts, database, runner):
    _, headers = accounts.headers()
    response = fc_client.post("/api/bailian/generation", headers=headers, json={
        "model": "wanx-v1", "prompt": f"a harbour {directive(duration_s=1)}", "n": 2})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["usage"] == {"image_count": 2}
    assert all(image["stored"] for image in data["output"]["results"])
    [usage] = usage_rows(database, data["job_id"])
    assert (usage.path, usage.image_count) == ("fc", 2)
    assert usage.compute_cost > 0  # the submit and every status call were invocations
    assert usage.cost == Decimal("0.32") + usage.compute_cost
    with database.session() as session:
        job = session.get(Job, data["job_id"])
    assert job.polls >= 1 and invocations(runner, "wanx") >= 1 + job.polls


def test_wrong_token_is_a_permanent_failure_with_a_clear_code(platform, settings, accounts,
                                                              database, runner, fc_platform):
    from web.app import create_app

    fc_platform.stop()
    wrong = processes.worker({**platform.env, **fc_env(runner, token="not-the-token")},
                             platform.log_dir, name="worker-fc-wrong-token")
    try:
        client = create_app(settings.model_copy(update={
            "fc_qwen_endpoint": f"{runner}/qwen", "fc_auth_token": SecretStr(TOKEN)})
        ).test_client()
        _, headers = accounts.headers()
        response = _chat(client, headers, "let me in", **ASYNC)
        job = wait_for_job(database, response.json["data"]["id"])
        assert (job.status, job.error_code, job.attempts) == \
            (JobStatus.FAILED, "FunctionUnauthorized", 1)
        assert usage_rows(database, job.id) == []
    finally:
        wrong.stop()
        fc_platform.start().wait_for_log("ready.")


@pytest.mark.parametrize("fault, code", [("timeout", "FunctionTimeout"),
                                         ("error", "FunctionError")])
def test_function_timeouts_and_errors_are_retried_then_fail_cleanly(
        fc_client, accounts, database, runner, emulator, fault, code):
    _, headers = accounts.headers()
    marker = directive()
    before = invocations(runner, "qwen")
    response = _chat(fc_client, headers, f"[[fc: fault={fault}]] {marker}", **ASYNC)
    job = wait_for_job(database, response.json["data"]["id"], timeout=60)
    assert (job.status, job.error_code, job.attempts) == (JobStatus.FAILED, code, 3)
    assert invocations(runner, "qwen") == before + 3
    assert usage_rows(database, job.id) == []
    assert job.compute_cost > 0  # the failed invocations still cost something


def test_a_retried_function_error_then_succeeds_without_a_direct_call(
        fc_client, accounts, database, runner, emulator):
    _, headers = accounts.headers()
    marker = directive()
    response = _chat(fc_client, headers, f"[[fc: fault=error; times=1]] {marker}", **ASYNC)
    job = wait_for_job(database, response.json["data"]["id"], timeout=60)
    assert (job.status, job.attempts, job.path) == (JobStatus.SUCCEEDED, 2, "fc")
    # Two invocations, one DashScope call: the one the function made. No job runs on both.
    assert emulator.calls_with(marker.id) == 1


def test_correlation_id_mismatch_is_detected(fc_client, accounts, database, runner):
    _, headers = accounts.headers()
    response = _chat(fc_client, headers, "[[fc: fault=mismatch]] whose answer", **ASYNC)
    job = wait_for_job(database, response.json["data"]["id"], timeout=30)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "FunctionCorrelationMismatch")
    assert usage_rows(database, job.id) == []


def test_jobs_keep_the_path_they_were_submitted_on(client, accounts, database, runner,
                                                   fc_platform):
    """A job submitted while FC was not configured runs directly, even on an FC worker."""
    _, headers = accounts.headers()
    before = invocations(runner, "qwen")
    response = _chat(client, headers, "direct please")
    assert response.status_code == 200
    with database.session() as session:
        usage = session.scalar(select(UsageRecord).where(
            UsageRecord.job_id == response.json["data"]["job_id"]))
    assert usage.path == "dashscope"
    assert invocations(runner, "qwen") == before


def test_the_handlers_refuse_bad_tokens_and_requests_directly(runner):
    wrong = requests.post(f"{runner}/qwen", timeout=10, headers={
        "Authorization": "Bearer nope", "X-Correlation-ID": "c1"},
        json={"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}],
              "correlation_id": "c1"})
    assert wrong.status_code == 401
    assert wrong.json()["body"] == {"success": False, "error": {
        "code": "FunctionUnauthorized", "message": "missing or invalid bearer token"}}
    assert wrong.json()["headers"]["X-Correlation-ID"] == "c1"
    invalid = requests.post(f"{runner}/qwen", timeout=10, headers={
        "Authorization": f"Bearer {TOKEN}"}, json={"model": "qwen-plus", "messages": []})
    assert invalid.status_code == 400 and invalid.json()["body"]["success"] is False
    ok = requests.post(f"{runner}/qwen", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"},
                       json={"model": "qwen-plus", "prompt": None, "user_id": 1,
                             "messages": [{"role": "user", "content": "hello"}],
                             "parameters": {"max_tokens": 5}, "correlation_id": "c2"})
    payload = ok.json()
    assert payload["statusCode"] == 200
    assert payload["headers"] == {"Content-Type": "application/json", "X-Correlation-ID": "c2"}
    assert payload["body"]["success"] is True
    assert set(payload["body"]["token_usage"]) == {"input_tokens", "output_tokens",
                                                   "total_tokens"}
    assert payload["body"]["data"]["message"]["role"] == "assistant"
