"""API keys and budgets hold exactly across processes: two gunicorn instances with two workers
each, a real Celery worker and beat (the sweeper), one MariaDB and one Redis."""

from __future__ import annotations

import concurrent.futures
import itertools
import signal
import time
from decimal import Decimal

import openai
import pytest
import redis as redis_lib
import requests
from sqlalchemy import func, select

from common.billing.budgets import Budgets
from common.billing.models import BudgetCounter, JobCharge, UsageRecord
from common.jobs.models import Job, JobKind, JobStatus
from tests.support import processes
from tests.support.jobs import directive, wait_for_job, wait_until

pytestmark = pytest.mark.slow
CHAT = "/api/bailian/chat/completions"


@pytest.fixture(scope="module")
def stack(base_env, log_dir):
    worker = processes.worker(base_env, log_dir, name="keys-worker")
    beat = processes.beat(base_env, log_dir)
    started = []
    for name in ("keys-web-a", "keys-web-b"):
        port = processes.free_port()
        started.append((processes.gunicorn(base_env, log_dir, port, name=name, workers=2),
                        f"http://127.0.0.1:{port}"))
    state = {"worker": worker, "urls": [url for _, url in started]}
    yield state
    for proc, _ in started:
        proc.stop()
    state["worker"].stop()
    beat.stop()


def _login(url: str, accounts, role: str = "default") -> tuple[dict, dict]:
    account = accounts.create(role)
    token = requests.post(f"{url}/api/auth/login", timeout=10, json={
        "username": account["username"], "password": account["password"]}
    ).json()["data"]["access_token"]
    return account, {"Authorization": f"Bearer {token}"}


def _key(url: str, headers: dict, **fields) -> dict:
    response = requests.post(f"{url}/api/keys", json={"name": "e2e", **fields},
                             headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _body(content: str) -> dict:
    return {"model": "qwen-turbo", "max_tokens": 200,
            "messages": [{"role": "user", "content": content}]}


def test_a_burst_of_50_against_a_budget_for_10_admits_10_and_settles_exactly(
        stack, accounts, settings, database):
    urls = stack["urls"]
    _, login = _login(urls[0], accounts)
    body = _body(f"burst {directive(latency_ms=1500)}")
    worst = Budgets(settings).estimate(JobKind.CHAT, "qwen-turbo",
                                       {"messages": body["messages"],
                                        "parameters": {"max_tokens": 200}}).cost
    budget = worst * 10 + worst / 2  # covers 10 worst cases, not 11
    key = _key(urls[0], login, budget={"amount": str(budget), "period": "day"})
    headers = {"Authorization": f"Bearer {key['key']}", "Prefer": "respond-async"}
    targets = list(itertools.islice(itertools.cycle(urls), 50))
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda url: requests.post(
            f"{url}{CHAT}", json=body, headers=headers, timeout=30), targets))
    admitted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 402]
    assert len(admitted) + len(refused) == 50, sorted({r.status_code for r in responses})
    # No job finished during the burst (each takes 1.5 s), so exactly the 10 worst cases fit.
    assert len(admitted) == 10
    assert all(r.json()["code"] == 402 and "resets at" in r.json()["message"] for r in refused)
    job_ids = [r.json()["data"]["id"] for r in admitted]
    for job_id in job_ids:
        assert wait_for_job(database, job_id, timeout=60).status == JobStatus.SUCCEEDED
    with database.session() as session:
        usage = session.scalar(select(func.sum(UsageRecord.cost))
                               .where(UsageRecord.api_key_id == key["id"]))
        counter = session.scalars(select(BudgetCounter).where(
            BudgetCounter.scope == "key", BudgetCounter.owner_id == key["id"])).one()
        outcomes = session.scalars(select(JobCharge.outcome)
                                   .where(JobCharge.job_id.in_(job_ids))).all()
    assert usage <= budget + worst
    assert counter.spent == usage and counter.reserved == 0
    assert outcomes == ["settled"] * 10


def test_a_revoked_key_is_401_on_every_process_within_a_second_and_after_a_flush(
        stack, accounts, settings):
    urls = stack["urls"]
    _, login = _login(urls[0], accounts)
    key = _key(urls[0], login)
    auth = {"Authorization": f"Bearer {key['key']}"}
    for url in urls * 4:  # warm every process's view of the key
        assert requests.get(f"{url}/api/jobs", headers=auth, timeout=10).status_code == 200
    assert requests.delete(f"{urls[1]}/api/keys/{key['id']}", headers=login,
                           timeout=10).status_code == 200
    revoked_at = time.monotonic()
    statuses = [requests.get(f"{url}/api/jobs", headers=auth, timeout=10).status_code
                for url in urls * 8]
    assert time.monotonic() - revoked_at < 1.0
    assert set(statuses) == {401}
    redis_lib.Redis.from_url(settings.redis_connection_url).flushdb()
    assert {requests.get(f"{url}/api/jobs", headers=auth, timeout=10).status_code
            for url in urls * 4} == {401}


def test_the_openai_sdk_works_with_a_key_streaming_included(stack, accounts, database):
    url = stack["urls"][0]
    _, login = _login(url, accounts)
    key = _key(url, login, models=["qwen-turbo"])
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=key["key"], max_retries=0, timeout=60)
    completion = sdk.chat.completions.create(
        model="qwen-turbo", messages=[{"role": "user", "content": "hello key"}])
    assert completion.choices[0].message.content == "Echo: hello key"
    chunks = list(sdk.chat.completions.create(
        model="qwen-turbo", messages=[{"role": "user", "content": "stream key"}],
        stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Echo: stream key"
    assert chunks[-1].usage.total_tokens > 0
    with pytest.raises(openai.NotFoundError) as refused:
        sdk.chat.completions.create(model="qwen-plus",
                                    messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "model_not_found"
    with database.session() as session:
        rows = session.scalar(select(func.count()).select_from(UsageRecord)
                              .where(UsageRecord.api_key_id == key["id"]))
    assert rows == 2


def test_budget_exhaustion_is_the_sdks_insufficient_quota(stack, accounts):
    url = stack["urls"][1]
    _, login = _login(url, accounts)
    key = _key(url, login, budget={"amount": "0.0001", "period": "month"})
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=key["key"], max_retries=0, timeout=60)
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(model="qwen-turbo",
                                    messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "insufficient_quota"


def test_a_worker_killed_mid_job_settles_its_reservation_exactly_once(
        stack, accounts, base_env, log_dir, database, emulator):
    url = stack["urls"][0]
    _, login = _login(url, accounts)
    key = _key(url, login, budget={"amount": "1", "period": "month"})
    marker = directive(latency_ms=3000)
    job_id = requests.post(f"{url}{CHAT}", json=_body(f"survive {marker}"), timeout=10,
                           headers={"Authorization": f"Bearer {key['key']}",
                                    "Prefer": "respond-async"}).json()["data"]["id"]
    wait_until(lambda: emulator.calls_with(marker.id) == 1, timeout=20,
               message="the upstream call never started")
    stack["worker"].kill(signal.SIGKILL)
    stack["worker"] = processes.worker(base_env, log_dir, name="keys-worker-2")
    job = wait_for_job(database, job_id, timeout=90)
    assert job.status.is_terminal
    with database.session() as session:
        charge = session.get(JobCharge, job_id)
        rows = session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id)).all()
        counter = session.scalars(select(BudgetCounter).where(
            BudgetCounter.scope == "key", BudgetCounter.owner_id == key["id"])).one()
        assert session.get(Job, job_id).status == job.status
    assert charge.outcome in ("settled", "released") and charge.closed_at is not None
    assert counter.reserved == 0
    assert counter.spent == sum((r.cost for r in rows), Decimal(0))
    assert len(rows) <= 1
