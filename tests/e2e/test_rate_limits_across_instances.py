"""Rate limits hold exactly across processes and hosts: two gunicorn instances with two workers
each, sharing one Redis, with many clients firing twice a user's limit inside one window."""

from __future__ import annotations

import concurrent.futures
import itertools
import json

import pytest
import requests
from sqlalchemy import func, select

from common.jobs.models import Job
from tests.support import processes
from tests.support.stack import redis_db
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
LIMITS = {"chat": {"default": "20/minute", "premium": "40/minute", "admin": "60/minute"},
          "generation": {"default": "10/minute", "premium": "15/minute", "admin": "25/minute"}}
CHAT = "/api/bailian/chat/completions"
BODY = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def limiter_proxy(redis_server):
    proxy = TcpProxy(*redis_server)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def instances(base_env, log_dir, limiter_proxy):
    env = {**base_env, "RATE_LIMITS": json.dumps(LIMITS),
           # The limiter's Redis goes through a proxy so a test can take it away.
           "RATE_LIMIT_STORAGE_URL": f"redis://127.0.0.1:{limiter_proxy.port}/{redis_db('app')}"}
    started = []
    for name in ("web-a", "web-b"):
        port = processes.free_port()
        started.append((processes.gunicorn(env, log_dir, port, name=name, workers=2),
                        f"http://127.0.0.1:{port}"))
    yield [url for _, url in started]
    for proc, _ in started:
        proc.stop()


def _token(url, accounts, role) -> tuple[dict, str]:
    account = accounts.create(role)
    response = requests.post(f"{url}/api/auth/login", timeout=10, json={
        "username": account["username"], "password": account["password"]})
    return account, response.json()["data"]["access_token"]


def _burst(urls, token, count, path=CHAT, body=BODY) -> list[requests.Response]:
    """`count` async submissions from 32 threads, alternating between the instances."""
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}
    targets = list(itertools.islice(itertools.cycle(urls), count))
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        return list(pool.map(lambda url: requests.post(f"{url}{path}", json=body,
                                                       headers=headers, timeout=30), targets))


@pytest.mark.parametrize("role, limit", [("default", 20), ("premium", 40), ("admin", 60)])
def test_exactly_the_limit_is_admitted_across_instances(instances, accounts, database, role,
                                                        limit):
    account, token = _token(instances[0], accounts, role)
    responses = _burst(instances, token, 2 * limit)
    admitted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) == limit and len(refused) == limit, \
        sorted({r.status_code for r in responses})
    # Every admitted request saw a different count: the check and the increment are atomic.
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in admitted) == \
        list(range(limit))
    for response in refused:
        assert response.json()["code"] == 429
        assert response.headers["X-RateLimit-Limit"] == str(limit)
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert 0 < int(response.headers["Retry-After"]) <= 60
    with database.session() as session:
        created = session.scalar(select(func.count()).select_from(Job)
                                 .where(Job.user_id == account["id"]))
    assert created == limit  # a refused request created nothing


def test_generation_has_its_own_limits(instances, accounts):
    _, token = _token(instances[0], accounts, "default")
    responses = _burst(instances, token, 20, path="/api/bailian/generation",
                       body={"model": "wanx-v1", "prompt": "a fox"})
    assert sum(r.status_code == 202 for r in responses) == 10
    # Chat keeps its own allowance.
    assert _burst(instances, token, 1)[0].status_code == 202


def test_tier_change_applies_on_the_other_instance_at_once(instances, accounts):
    account, token = _token(instances[0], accounts, "default")
    assert sum(r.status_code == 202 for r in _burst(instances, token, 25)) == 20
    _, admin = _token(instances[0], accounts, "admin")
    promoted = requests.patch(f"{instances[0]}/api/admin/users/{account['id']}", timeout=10,
                              json={"role": "premium"},
                              headers={"Authorization": f"Bearer {admin}"})
    assert promoted.status_code == 200
    responses = _burst(instances[1:], token, 25)  # the other instance, right away
    assert sum(r.status_code == 202 for r in responses) == 20  # 40 for premium, 20 spent


def test_redis_gone_fails_closed_with_503_and_creates_nothing(instances, accounts, database,
                                                              limiter_proxy):
    account, token = _token(instances[0], accounts, "default")
    limiter_proxy.set_mode("refuse")
    try:
        responses = _burst(instances, token, 8)
    finally:
        limiter_proxy.set_mode("pass")
    assert {r.status_code for r in responses} == {503}
    assert all(int(r.headers["Retry-After"]) > 0 for r in responses)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.user_id == account["id"])) == 0
    assert _burst(instances, token, 1)[0].status_code == 202
