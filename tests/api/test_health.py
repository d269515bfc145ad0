"""Health probes: shapes, and readiness that fails fast and honestly when a dependency is gone."""

from __future__ import annotations

import time

import pytest

from tests.support.stack import redis_db
from tests.support.tcp_proxy import TcpProxy


def test_health_and_liveness_shapes(client):
    health = client.get("/health").json
    assert health["status"] == "healthy" and "timestamp" in health
    live = client.get("/health/live").json
    assert live["status"] == "alive"
    assert live["service"] == "bailian-backend" and live["version"]


def test_ready_when_everything_is_reachable(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "connected", "redis": "connected",
                              "dashscope_api": "configured",
                              "function_compute": "not_configured"}


def _app_through(settings, *, mysql_proxy=None, redis_proxy=None):
    from tests.support.stack import mysql_url
    from web.app import create_app

    changes = {}
    if mysql_proxy:
        name = settings.sqlalchemy_url.rsplit("/", 1)[1].split("?")[0]
        changes["database_url"] = mysql_url(name, port=mysql_proxy.port)
    if redis_proxy:
        changes["redis_url"] = f"redis://127.0.0.1:{redis_proxy.port}/{redis_db('app')}"
    return create_app(settings.model_copy(update=changes)).test_client()


@pytest.mark.parametrize("component", ["database", "redis"])
@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
def test_readiness_503_while_a_dependency_is_down_then_200(settings, mysql_server, redis_server,
                                                          component, fault, app, caplog):
    # `app` first: the first create_app of a run replaces the root logger's stream handlers
    # (caplog's among them) with the JSON one.
    target = mysql_server if component == "database" else redis_server
    proxy = TcpProxy(*target)
    try:
        client = _app_through(settings, **{("mysql_proxy" if component == "database"
                                            else "redis_proxy"): proxy})
        assert client.get("/health/ready").status_code == 200

        proxy.set_mode(fault)
        started = time.monotonic()
        response = client.get("/health/ready")
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert response.json["status"] == "not_ready"
        # A short public reason in the seed's shape; the driver's message only in the log.
        reason = {"refuse": "error: connection failed", "blackhole": "error: timeout"}[fault]
        assert response.json["checks"][component] == reason
        logged = [r.getMessage() for r in caplog.records
                  if r.name == "common.infra.health" and component in r.getMessage()]
        assert logged and all("Error: " in m for m in logged), logged  # the driver's error
        assert "Error" not in response.get_data(as_text=True)
        other = "redis" if component == "database" else "database"
        assert response.json["checks"][other] == "connected"
        assert elapsed < 2.0, f"probe took {elapsed:.2f}s"

        proxy.set_mode("pass")
        assert client.get("/health/ready").status_code == 200
    finally:
        proxy.close()


def test_dashscope_not_configured_is_reported(settings):
    from web.app import create_app

    client = create_app(settings.model_copy(update={"qwen_api_key": None})).test_client()
    assert client.get("/health/ready").json["checks"]["dashscope_api"] == "not_configured"


def test_function_compute_is_reported_when_configured(settings):
    from pydantic import SecretStr

    from web.app import create_app

    client = create_app(settings.model_copy(update={
        "fc_qwen_endpoint": "http://127.0.0.1:1/qwen", "fc_auth_token": SecretStr("t" * 32)})
    ).test_client()
    assert client.get("/health/ready").json["checks"]["function_compute"] == "configured"


def test_redis_outage_is_a_503_for_authenticated_requests_not_a_401(settings, redis_server,
                                                                   accounts):
    proxy = TcpProxy(*redis_server)
    try:
        client = _app_through(settings, redis_proxy=proxy)
        _, headers = accounts.headers()
        assert client.get("/api/auth/me", headers=headers).status_code == 200
        proxy.set_mode("refuse")
        response = client.get("/api/auth/me", headers=headers)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
    finally:
        proxy.close()
