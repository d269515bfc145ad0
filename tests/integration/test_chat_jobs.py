"""Chat jobs end to end: the Flask app, a real Celery worker and beat, MariaDB, Redis and the
DashScope emulator driven through the real SDK."""

from __future__ import annotations

import datetime as dt
import signal
import time
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from common.infra.orm import utcnow
from common.jobs import transitions
from common.jobs.models import Job, JobKind, JobStatus
from emulator import text as upstream_text
from tests.support import processes
from tests.support.jobs import directive, usage_rows, wait_for_job, wait_until
from tests.support.stack import redis_db
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.usefixtures("platform")
URL = "/api/bailian/chat/completions"
ASYNC = {"Prefer": "respond-async"}


def body(content: str, model: str = "qwen-plus", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def test_sync_chat_returns_the_completion_and_records_exact_usage(client, accounts, database,
                                                                  settings, emulator):
    account, headers = accounts.headers()
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is the capital of France?"}]
    response = client.post(URL, json={"model": "qwen-plus", "messages": messages,
                                      "temperature": 0.3},
                           headers={**headers, "X-Request-ID": "corr-sync-chat"})
    assert response.status_code == 200, response.json
    assert (response.json["code"], response.json["message"]) == (200, "Request successful")
    data = response.json["data"]
    assert data["object"] == "chat.completion" and data["model"] == "qwen-plus"
    reply = "Echo: What is the capital of France?"
    assert data["choices"] == [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": reply}}]
    # Exactly what upstream reported (the emulator's deterministic counts).
    prompt, completion = upstream_text.input_tokens(messages), upstream_text.count_tokens(reply)
    assert data["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}

    [usage] = usage_rows(database, data["job_id"])
    assert (usage.input_tokens, usage.output_tokens) == (prompt, completion)
    assert usage.total_tokens == prompt + completion
    assert usage.user_id == account["id"] and usage.model == "qwen-plus"
    expected = (Decimal(prompt) * Decimal("0.0008") + Decimal(completion) * Decimal("0.002")
                ) / 1000
    assert usage.cost == expected.quantize(Decimal("0.00000001"))
    assert usage.currency == "CNY" and usage.path == "dashscope"

    job = client.get(f"/api/jobs/{data['job_id']}", headers=headers).json["data"]
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert job["result"]["choices"] == data["choices"]
    assert job["usage"]["total_tokens"] == prompt + completion
    assert job["cost"] == {"amount": float(usage.cost), "currency": "CNY"}
    # The correlation id reached DashScope in the request headers.
    assert "corr-sync-chat" in {e["request_id"] for e in emulator.stats()["log"]}


def test_async_chat_is_polled_to_the_same_result(client, accounts, database):
    _, headers = accounts.headers()
    accepted = client.post(URL, json=body("async please", max_tokens=3),
                           headers={**headers, **ASYNC})
    assert accepted.status_code == 202
    location = accepted.headers["Location"]
    job = wait_for_job(database, accepted.json["data"]["id"])
    assert job.status == JobStatus.SUCCEEDED
    polled = client.get(location, headers=headers).json["data"]
    assert polled["status"] == "succeeded"
    assert polled["result"]["choices"][0]["finish_reason"] == "length"
    assert polled["result"]["usage"]["completion_tokens"] == 3


def test_throttled_twice_then_success_after_retries(client, accounts, database, emulator):
    _, headers = accounts.headers()
    marker = directive(fault=429, times=2, retry_after=1)
    started = time.monotonic()
    response = client.post(URL, json=body(f"retry me {marker}"), headers=headers)
    assert response.status_code == 200, response.json
    assert time.monotonic() - started >= 2.0  # honoured Retry-After: 1 twice
    job = wait_for_job(database, response.json["data"]["job_id"])
    assert job.attempts == 3
    assert emulator.calls_with(marker.id) == 3
    assert len(usage_rows(database, job.id)) == 1


def test_upstream_401_fails_at_once_with_its_code_and_no_usage(client, accounts, database,
                                                               emulator):
    _, headers = accounts.headers()
    marker = directive(fault=401)
    response = client.post(URL, json=body(f"bad key {marker}"), headers=headers)
    assert response.status_code == 502
    assert response.json["message"].startswith("InvalidApiKey")
    job = response.json["data"]
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"] == {"code": "InvalidApiKey", "message": "Invalid API-key provided."}
    assert job["usage"] is None and job["cost"] is None
    assert usage_rows(database, job["id"]) == []
    assert emulator.calls_with(marker.id) == 1


def test_content_moderation_is_a_400_without_retry(client, accounts, database):
    _, headers = accounts.headers()
    response = client.post(URL, json=body(f"bad words {directive(fault='inspection')}"),
                           headers=headers)
    assert response.status_code == 400
    assert response.json["data"]["error"]["code"] == "DataInspectionFailed"
    assert response.json["data"]["attempts"] == 1


def test_persistent_server_errors_fail_after_the_attempt_budget(client, accounts, database,
                                                                settings):
    _, headers = accounts.headers()
    accepted = client.post(URL, json=body(f"always 500 {directive(fault=500)}"),
                           headers={**headers, **ASYNC})
    job = wait_for_job(database, accepted.json["data"]["id"], timeout=60)
    assert job.status == JobStatus.FAILED
    assert job.error_code == "InternalError"
    assert job.attempts == settings.job_max_attempts
    assert usage_rows(database, job.id) == []


def test_a_hung_upstream_times_out_and_the_retry_succeeds(client, accounts, database):
    _, headers = accounts.headers()
    accepted = client.post(URL, json=body(f"hang once {directive(fault='hang', times=1)}"),
                           headers={**headers, **ASYNC})
    job = wait_for_job(database, accepted.json["data"]["id"], timeout=60)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2


def test_connection_reset_is_retried(client, accounts, database):
    _, headers = accounts.headers()
    # The SDK itself resends once on a dropped connection, so two resets reach one attempt.
    accepted = client.post(URL, json=body(f"reset {directive(fault='reset', times=2)}"),
                           headers={**headers, **ASYNC})
    job = wait_for_job(database, accepted.json["data"]["id"])
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2


def test_idempotent_replay_makes_no_second_upstream_call(client, accounts, database, emulator):
    _, headers = accounts.headers()
    marker = directive()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(URL, json=body(f"once {marker}"), headers={**headers, **key})
    second = client.post(URL, json=body(f"once {marker}"), headers={**headers, **key})
    assert first.status_code == second.status_code == 200
    assert first.json["data"] == second.json["data"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert emulator.calls_with(marker.id) == 1
    assert len(usage_rows(database, first.json["data"]["job_id"])) == 1


def test_cancel_while_running_hides_the_result_and_records_what_was_billed(client, accounts,
                                                                           database, emulator):
    _, headers = accounts.headers()
    accepted = client.post(URL, json=body(f"slow {directive(latency_ms=1500)}"),
                           headers={**headers, **ASYNC})
    job_id = accepted.json["data"]["id"]
    wait_for_job(database, job_id, status=JobStatus.RUNNING)
    canceled = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert canceled.status_code == 200 and canceled.json["data"]["status"] == "canceled"
    # The upstream call finishes anyway: DashScope bills it, so its usage is recorded once.
    wait_until(lambda: usage_rows(database, job_id), timeout=20)
    final = client.get(f"/api/jobs/{job_id}", headers=headers).json["data"]
    assert final["status"] == "canceled" and final["result"] is None
    assert final["usage"]["total_tokens"] > 0
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code == 409


def test_sync_wait_gives_up_with_202_but_the_job_finishes(client, accounts, database):
    _, headers = accounts.headers()
    response = client.post(URL, json=body(f"slow {directive(latency_ms=2500)}"),
                           headers={**headers, "Prefer": "wait=1"})
    assert response.status_code == 202
    assert response.json["data"]["status"] in ("queued", "running")
    assert wait_for_job(database, response.json["data"]["id"]).status == JobStatus.SUCCEEDED


def test_worker_killed_mid_call_completes_the_job_exactly_once(client, accounts, database,
                                                               emulator, platform):
    _, headers = accounts.headers()
    marker = directive(latency_ms=3000)
    accepted = client.post(URL, json=body(f"survive {marker}"), headers={**headers, **ASYNC})
    job_id = accepted.json["data"]["id"]
    wait_until(lambda: emulator.calls_with(marker.id) == 1, timeout=20,
               message="the upstream call never started")

    platform.worker.kill(signal.SIGKILL)  # the worker dies while DashScope is answering
    platform.worker = processes.worker(platform.env, platform.log_dir)

    job = wait_for_job(database, job_id, timeout=60)
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert len(usage_rows(database, job_id)) == 1
    assert emulator.calls_with(marker.id) == 2


def test_broker_down_at_submit_accepts_the_job_and_the_sweeper_runs_it(
        settings, accounts, database, redis_server, emulator):
    from web.app import create_app

    proxy = TcpProxy(*redis_server)
    proxy.set_mode("refuse")
    try:
        broker_down = settings.model_copy(update={
            "celery_broker_url": f"redis://127.0.0.1:{proxy.port}/{redis_db('broker')}"})
        client = create_app(broker_down).test_client()
        _, headers = accounts.headers()
        marker = directive()
        response = client.post(URL, json=body(f"no broker {marker}"), headers=headers)
        assert response.status_code in (200, 202), response.json
        job_id = response.headers["X-Job-ID"]
        job = wait_for_job(database, job_id, timeout=60)
        assert job.status == JobStatus.SUCCEEDED
        assert len(usage_rows(database, job_id)) == 1
        assert emulator.calls_with(marker.id) == 1
    finally:
        proxy.close()


def test_redis_down_at_submit_is_a_503_that_creates_nothing(settings, accounts, database,
                                                           redis_server):
    from web.app import create_app

    proxy = TcpProxy(*redis_server)
    try:
        via_proxy = f"redis://127.0.0.1:{proxy.port}"
        client = create_app(settings.model_copy(update={
            "redis_url": f"{via_proxy}/{redis_db('app')}",
            "celery_broker_url": f"{via_proxy}/{redis_db('broker')}"})
        ).test_client()
        account, headers = accounts.headers()
        proxy.set_mode("refuse")
        response = client.post(URL, json=body("redis is down"), headers=headers)
        assert response.status_code == 503
        assert response.json["code"] == 503 and response.headers["Retry-After"]
        with database.session() as session:
            count = session.scalar(select(func.count()).select_from(Job)
                                   .where(Job.user_id == account["id"]))
        assert count == 0
    finally:
        proxy.close()


def test_sweeper_publishes_a_job_whose_message_never_left(accounts, database, lifecycle):
    """A web process that died between commit and publish leaves only the row behind."""
    account = accounts.create()
    marker = directive()
    job_id = str(uuid.uuid4())
    with database.transaction() as conn:  # the commit, and nothing after it
        transitions.insert_job(conn, {
            "id": job_id, "user_id": account["id"], "kind": JobKind.CHAT,
            "model": "qwen-turbo", "status": JobStatus.QUEUED, "attempts": 0, "polls": 0,
            "request": {"messages": [{"role": "user", "content": f"orphan {marker}"}],
                        "parameters": {}},
            "request_fingerprint": "0" * 64, "created_at": utcnow(), "updated_at": utcnow(),
            "deadline_at": utcnow() + dt.timedelta(seconds=120), "path": "dashscope",
            "compute_cost": Decimal(0)})
    finished = wait_for_job(database, job_id, timeout=30)
    assert finished.status == JobStatus.SUCCEEDED
    assert len(usage_rows(database, job_id)) == 1


def test_database_outage_while_persisting_keeps_the_result_without_a_second_call(
        platform, accounts, client, database, mysql_server, emulator):
    """R7: MySQL drops while the worker holds a billed result; it is stored once MySQL is
    back, with one usage row and no second upstream call."""
    from tests.support.stack import mysql_url

    proxy = TcpProxy(*mysql_server)
    name = platform.env["DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]
    env = {**platform.env, "DATABASE_URL": mysql_url(name, port=proxy.port)}
    platform.worker.stop()  # only the worker behind the proxy may take this job
    isolated = processes.worker(env, platform.log_dir, name="worker-db-proxy")
    try:
        _, headers = accounts.headers()
        marker = directive(latency_ms=2500)
        accepted = client.post(URL, json=body(f"db outage {marker}", model="qwen-max"),
                               headers={**headers, **ASYNC})
        job_id = accepted.json["data"]["id"]
        wait_until(lambda: emulator.calls_with(marker.id) >= 1, timeout=20)
        proxy.set_mode("refuse")
        time.sleep(4)  # the call returns into an unreachable database
        proxy.set_mode("pass")
        job = wait_for_job(database, job_id, timeout=90)
        assert job.status == JobStatus.SUCCEEDED
        assert len(usage_rows(database, job_id)) == 1
        assert emulator.calls_with(marker.id) == 1
        assert "billed result kept in redis" in isolated.log()
    finally:
        isolated.stop()
        proxy.close()
        platform.worker = processes.worker(platform.env, platform.log_dir)
