"""Per-tier, per-endpoint limits: headers, 429s, tier changes, and the Redis-down policy.

(The cross-process proof, two gunicorn instances with two workers each, is in
tests/e2e/test_rate_limits_across_instances.py.)"""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from common.accounts.models import Role
from common.infra.settings import Settings
from common.jobs.models import Job
from tests.support.stack import redis_db
from tests.support.tcp_proxy import TcpProxy

CHAT = "/api/bailian/chat/completions"
GEN = "/api/bailian/generation"
ASYNC = {"Prefer": "respond-async"}
LIMITS = {"chat": {Role.DEFAULT: "4/minute", Role.PREMIUM: "6/minute", Role.ADMIN: "8/minute"},
          "generation": {Role.DEFAULT: "2/minute", Role.PREMIUM: "3/minute",
                         Role.ADMIN: "5/minute"},
          "video": {Role.DEFAULT: "1/minute", Role.PREMIUM: "2/minute", Role.ADMIN: "3/minute"}}
VIDEO = "/api/bailian/video"
VIDEO_BODY = {"model": "wan2.2-t2v-plus", "prompt": "a cat"}
CHAT_BODY = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hi"}]}
GEN_BODY = {"model": "wanx-v1", "prompt": "a cat"}


@pytest.fixture(scope="module")
def limited(settings):
    from web.app import create_app

    return create_app(settings.model_copy(update={"rate_limits": LIMITS})).test_client()


def _fire(client, url, body, headers, times) -> list:
    return [client.post(url, json=body, headers={**headers, **ASYNC}) for _ in range(times)]


@pytest.mark.parametrize("role", ["default", "premium", "admin"])
def test_each_tier_gets_its_own_numbers_per_endpoint(limited, accounts, role):
    _, headers = accounts.headers(role)
    for endpoint, url, body in (("chat", CHAT, CHAT_BODY), ("generation", GEN, GEN_BODY),
                                ("video", VIDEO, VIDEO_BODY)):
        limit = int(LIMITS[endpoint][Role(role)].split("/")[0])
        codes = [r.status_code for r in _fire(limited, url, body, headers, limit + 2)]
        assert codes == [202] * limit + [429, 429], (endpoint, role, codes)


def test_headers_on_admitted_and_rejected_responses(limited, accounts):
    _, headers = accounts.headers()
    first, *_, fourth, rejected = _fire(limited, CHAT, CHAT_BODY, headers, 5)
    assert first.headers["X-RateLimit-Limit"] == "4"
    assert first.headers["X-RateLimit-Remaining"] == "3"
    assert fourth.headers["X-RateLimit-Remaining"] == "0"
    reset = int(first.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 121
    assert rejected.status_code == 429
    assert rejected.json["code"] == 429 and "Rate limit exceeded" in rejected.json["message"]
    assert rejected.json["data"] is None
    assert 0 < int(rejected.headers["Retry-After"]) <= 120
    assert rejected.headers["X-RateLimit-Remaining"] == "0"


def test_sync_and_invalid_requests_count_but_bad_tokens_do_not(limited, accounts):
    _, headers = accounts.headers()
    assert limited.post(CHAT, json=CHAT_BODY, headers={"Authorization": "Bearer junk"}
                        ).status_code == 401
    invalid = limited.post(CHAT, json={"model": "nope"}, headers=headers)
    assert invalid.status_code == 400 and invalid.headers["X-RateLimit-Remaining"] == "3"
    sync = limited.post(CHAT, json=CHAT_BODY, headers={**headers, "Prefer": "wait=0"})
    assert sync.headers["X-RateLimit-Remaining"] == "2"


def test_tier_change_applies_from_the_next_request(limited, client, accounts):
    account, headers = accounts.headers()
    _, admin = accounts.headers("admin")
    codes = [r.status_code for r in _fire(limited, CHAT, CHAT_BODY, headers, 5)]
    assert codes[-1] == 429
    assert client.patch(f"/api/admin/users/{account['id']}", json={"role": "premium"},
                        headers=admin).status_code == 200
    # Same user, same window: premium allows 6, four are spent.
    codes = [r.status_code for r in _fire(limited, CHAT, CHAT_BODY, headers, 3)]
    assert codes == [202, 202, 429]


def test_a_demotion_does_not_buy_a_fresh_allowance(limited, client, accounts):
    account, headers = accounts.headers("premium")
    assert [r.status_code for r in _fire(limited, CHAT, CHAT_BODY, headers, 5)] == [202] * 5
    _, admin = accounts.headers("admin")
    client.patch(f"/api/admin/users/{account['id']}", json={"role": "default"}, headers=admin)
    refused = _fire(limited, CHAT, CHAT_BODY, headers, 1)[0]
    assert refused.status_code == 429  # five made this minute, the default tier allows four
    assert refused.headers["X-RateLimit-Limit"] == "4"
    assert "default tier" in refused.json["message"]


def test_limits_are_per_user(limited, accounts):
    _, alice = accounts.headers()
    _, bob = accounts.headers()
    assert [r.status_code for r in _fire(limited, GEN, GEN_BODY, alice, 3)][-1] == 429
    assert _fire(limited, GEN, GEN_BODY, bob, 1)[0].status_code == 202


def _app_with_limiter_redis_through(settings, proxy, policy, **changes):
    from web.app import create_app

    return create_app(settings.model_copy(update={
        "rate_limits": LIMITS, "rate_limit_on_redis_down": policy,
        "rate_limit_storage_url": f"redis://127.0.0.1:{proxy.port}/{redis_db('app')}",
        **changes})).test_client()


def test_redis_down_fails_closed_by_default_with_nothing_created(settings, accounts, database,
                                                                 redis_server):
    proxy = TcpProxy(*redis_server)
    try:
        client = _app_with_limiter_redis_through(settings, proxy, "closed")
        account, headers = accounts.headers()
        assert _fire(client, CHAT, CHAT_BODY, headers, 1)[0].status_code == 202
        proxy.set_mode("refuse")
        for url, body in ((CHAT, CHAT_BODY), (GEN, GEN_BODY)):
            response = client.post(url, json=body, headers={**headers, **ASYNC})
            assert response.status_code == 503, response.json
            assert response.json["code"] == 503 and int(response.headers["Retry-After"]) > 0
        with database.session() as session:
            created = session.scalar(select(func.count()).select_from(Job)
                                     .where(Job.user_id == account["id"]))
        assert created == 1  # only the request made before Redis went away
        proxy.set_mode("pass")
        assert _fire(client, CHAT, CHAT_BODY, headers, 1)[0].status_code == 202
    finally:
        proxy.close()


def test_redis_down_with_the_local_policy_still_limits_per_process(settings, accounts,
                                                                  redis_server):
    proxy = TcpProxy(*redis_server)
    try:
        client = _app_with_limiter_redis_through(settings, proxy, "local")
        _, headers = accounts.headers()
        proxy.set_mode("refuse")
        codes = [r.status_code for r in _fire(client, GEN, GEN_BODY, headers, 3)]
        assert codes == [202, 202, 429]  # never unlimited
    finally:
        proxy.close()


def test_login_has_a_per_client_limit(settings, accounts):
    from web.app import create_app

    client = create_app(settings.model_copy(update={"login_rate_limit": "3/minute"})
                        ).test_client()
    account = accounts.create()
    body = {"username": account["username"], "password": account["password"]}
    codes = [client.post("/api/auth/login", json=body,
                         environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    other_client = client.post("/api/auth/login", json=body,
                               environ_base={"REMOTE_ADDR": "10.9.8.8"})
    assert other_client.status_code == 200


def test_limits_can_be_switched_off(settings, accounts):
    from web.app import create_app

    client = create_app(settings.model_copy(update={
        "rate_limits": LIMITS, "rate_limits_enabled": False})).test_client()
    _, headers = accounts.headers()
    codes = [r.status_code for r in _fire(client, GEN, GEN_BODY, headers, 4)]
    assert codes == [202] * 4


def test_documented_default_limits():
    limits = Settings(_env_file=None, app_env="development").rate_limits
    assert limits["chat"] == {Role.DEFAULT: "100/minute", Role.PREMIUM: "500/minute",
                              Role.ADMIN: "1000/minute"}
    assert limits["generation"] == {Role.DEFAULT: "50/minute", Role.PREMIUM: "100/minute",
                                    Role.ADMIN: "200/minute"}
    assert limits["embeddings"] == {Role.DEFAULT: "300/minute", Role.PREMIUM: "1500/minute",
                                    Role.ADMIN: "3000/minute"}
    assert limits["video"] == {Role.DEFAULT: "10/minute", Role.PREMIUM: "30/minute",
                               Role.ADMIN: "60/minute"}


def test_a_rate_limits_setting_without_an_endpoint_keeps_its_default():
    limits = Settings(_env_file=None, app_env="development",
                      rate_limits={"chat": LIMITS["chat"]}).rate_limits
    assert limits["chat"] == LIMITS["chat"]
    assert limits["embeddings"][Role.PREMIUM] == "1500/minute"
    # A RATE_LIMITS written before videos had a limit still limits them, by default.
    assert limits["video"][Role.PREMIUM] == "30/minute"


def test_malformed_limit_settings_are_refused_at_start():
    with pytest.raises(ValueError, match="no granularity"):
        Settings(_env_file=None, app_env="development",
                 rate_limits={"chat": {"default": "1 per fortnight", "premium": "1/minute",
                                       "admin": "1/minute"}, "generation": LIMITS["generation"]})


# --- what the limits count in /metrics -------------------------------------------------------

COUNTERS = ("rate_limit_rejections_total", "rate_limit_storage_errors_total")


def _scrape(client) -> dict[tuple[str, tuple], float]:
    """The rate-limit counters, as the app's own /metrics serves them."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples if sample.name in COUNTERS}


def _moved(before: dict, after: dict) -> dict[tuple[str, tuple], float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()
            if value != before.get(key, 0.0)}


def _rejected(endpoint: str, tier: str):
    return "rate_limit_rejections_total", (("endpoint", endpoint), ("tier", tier))


def _without_redis(policy: str):
    return "rate_limit_storage_errors_total", (("policy", policy),)


def _logins(client, account, times, password=None) -> list[int]:
    body = {"username": account["username"], "password": password or account["password"]}
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    return [client.post("/api/auth/login", json=body, environ_base={"REMOTE_ADDR": address}
                        ).status_code for _ in range(times)]


def test_rejections_and_refusals_without_redis_are_counted(settings, accounts, redis_server):
    proxy = TcpProxy(*redis_server)
    try:
        client = _app_with_limiter_redis_through(settings, proxy, "closed",
                                                 login_rate_limit="3/minute",
                                                 login_failure_limit="2/minute")
        _, default = accounts.headers()
        _, premium = accounts.headers("premium")
        account = accounts.create()
        before = _scrape(client)

        codes = [r.status_code for r in _fire(client, CHAT, CHAT_BODY, default, 6)]
        assert codes == [202] * 4 + [429] * 2
        codes = [r.status_code for r in _fire(client, GEN, GEN_BODY, premium, 4)]
        assert codes == [202] * 3 + [429]
        assert _logins(client, account, 4) == [200, 200, 200, 429]  # per client address
        assert _logins(client, account, 3, password="wrong") == [401, 401, 429]  # failures

        proxy.set_mode("refuse")
        for url, body in ((CHAT, CHAT_BODY), (CHAT, CHAT_BODY), (GEN, GEN_BODY)):
            assert client.post(url, json=body, headers={**premium, **ASYNC}).status_code == 503
        assert _logins(client, account, 2) == [503, 503]
        proxy.set_mode("pass")

        assert _moved(before, _scrape(client)) == {
            _rejected("chat", "default"): 2, _rejected("generation", "premium"): 1,
            _rejected("login", "anonymous"): 2, _without_redis("closed"): 5}
    finally:
        proxy.close()


def test_checks_limited_per_process_without_redis_are_counted(settings, accounts, redis_server):
    proxy = TcpProxy(*redis_server)
    try:
        client = _app_with_limiter_redis_through(settings, proxy, "local",
                                                 login_rate_limit="2/minute")
        _, headers = accounts.headers("admin")
        account = accounts.create()
        before = _scrape(client)

        proxy.set_mode("refuse")
        codes = [r.status_code for r in _fire(client, GEN, GEN_BODY, headers, 6)]
        assert codes == [202] * 5 + [429]  # admin: 5/minute, per process
        assert _logins(client, account, 3) == [200, 200, 429]
        proxy.set_mode("pass")

        assert _moved(before, _scrape(client)) == {
            _rejected("generation", "admin"): 1, _rejected("login", "anonymous"): 1,
            _without_redis("local"): 9}
    finally:
        proxy.close()
