"""No body makes a 500: JSON nested 10,000 deep is a 400 envelope on every route that takes a
body, before and after login, with no ERROR log and no 5xx counted."""

from __future__ import annotations

import logging
import re

import pytest

from common.infra.metrics import HTTP_REQUESTS

DEPTH = 10_000
BODIES = {"array": "[" * DEPTH + "]" * DEPTH,
          "object": '{"a":' * DEPTH + "1" + "}" * DEPTH}


def _body_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) of the app that takes a JSON body, path parameters filled in (the
    console's forms are urlencoded: test_console_forms_over_the_size_limit_are_a_413)."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console."):
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH"}):
            path = rule.rule
            for argument in rule.arguments:
                path = path.replace(f"<{argument}>", "1").replace(f"<int:{argument}>", "1")
            routes.append((method, path))
    return routes


def _server_errors() -> float:
    return sum(sample.value for metric in HTTP_REQUESTS.collect() for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["status"].startswith("5"))


def _error_message(path: str, body: dict, status: int) -> str | None:
    """The error's message in its surface's shape: OpenAI's error object on /v1, else the
    envelope (None when the shape is wrong)."""
    if path.startswith("/v1/"):
        error = body.get("error") or {}
        return error.get("message") if error.get("type") == "invalid_request_error" else None
    return body.get("message") if body.get("code") == status else None


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
        assert _error_message(path, response.json, 400) is not None, (method, path)
        assert "nested" in _error_message(path, response.json, 400), (method, path)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert _server_errors() == errors_before


def test_a_body_over_the_size_limit_is_a_413_on_every_body_route(app, client, settings):
    oversized = "[" + "1," * settings.max_content_length + "1]"
    for method, path in _body_routes(app):
        response = client.open(path, method=method, data=oversized,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 413, (method, path, response.status_code)
        assert _error_message(path, response.json, 413), (method, path, response.json)


def test_console_forms_over_the_size_limit_are_a_413(app, client, settings):
    oversized = {"username": "u" * settings.max_content_length, "password": "p"}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console.") and "POST" in rule.methods:
            path = re.sub(r"<[^>]+>", "1", rule.rule)
            response = client.post(path, data=oversized)
            assert response.status_code == 413, (path, response.status_code)
            assert response.mimetype == "text/html"


def test_deep_json_through_gunicorn_threads_is_a_400(base_env, log_dir):
    """The same answer from gunicorn's worker threads, whose stacks are not the main thread's."""
    import requests

    from tests.support import processes

    port = processes.free_port()
    web = processes.gunicorn(base_env, log_dir, port, name="deep-json-web", workers=1)
    try:
        offset = len(web.log())
        for body in BODIES.values():
            for path in ("/api/auth/login", "/api/admin/users"):
                response = requests.post(f"http://127.0.0.1:{port}{path}", data=body,
                                         headers={"Content-Type": "application/json"},
                                         timeout=10)
                assert response.status_code == 400, (path, response.text[:200])
                assert response.json()["message"] == "Request body is nested too deeply"
        assert '"level": "ERROR"' not in web.log()[offset:]
    finally:
        web.stop()
