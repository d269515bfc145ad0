"""No body makes a 500: JSON nested 10,000 deep is a 400 envelope on every route that takes a
body, before and after login, with no ERROR log and no 5xx counted."""

from __future__ import annotations

import logging

import pytest

from common.infra.metrics import HTTP_REQUESTS

DEPTH = 10_000
BODIES = {"array": "[" * DEPTH + "]" * DEPTH,
          "object": '{"a":' * DEPTH + "1" + "}" * DEPTH}


def _body_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) of the app that takes a body, path parameters filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH"}):
            path = rule.rule
            for argument in rule.arguments:
                path = path.replace(f"<{argument}>", "1").replace(f"<int:{argument}>", "1")
            routes.append((method, path))
    return routes


def _server_errors() -> float:
    return sum(sample.value for metric in HTTP_REQUESTS.collect() for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["status"].startswith("5"))


def test_the_app_has_body_routes(app):
    paths = {path for _, path in _body_routes(app)}
    assert {"/api/auth/login", "/api/auth/logout", "/api/admin/users"} <= paths
    assert any(path.endswith("/chat/completions") for path in paths)


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "admin"])
@pytest.mark.parametrize("shape", sorted(BODIES))
def test_deep_json_is_a_400_on_every_body_route(app, client, accounts, caplog, shape,
                                                logged_in):
    headers = {"Content-Type": "application/json"}
    if logged_in:
        headers.update(accounts.headers("admin")[1])
    errors_before = _server_errors()
    caplog.set_level(logging.WARNING)
    for method, path in _body_routes(app):
        response = client.open(path, method=method, data=BODIES[shape], headers=headers)
        assert response.status_code == 400, (method, path, response.status_code, response.json)
        assert response.json["code"] == 400, (method, path)
        assert "nested" in response.json["message"], (method, path, response.json)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert _server_errors() == errors_before
