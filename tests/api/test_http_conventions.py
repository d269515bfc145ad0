"""Every /api response is an envelope with X-Request-ID; nothing a client sends is a 500."""

from __future__ import annotations

import pytest


def test_request_id_is_echoed_or_generated(client):
    echoed = client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["X-Request-ID"] == "trace-123"
    generated = client.get("/health")
    assert len(generated.headers["X-Request-ID"]) == 32
    hostile = client.get("/health", headers={"X-Request-ID": "<script> " + "x" * 200})
    assert hostile.headers["X-Request-ID"] != "<script> " + "x" * 200
    assert len(hostile.headers["X-Request-ID"]) == 32


def test_unknown_route_is_a_404_envelope(client):
    response = client.get("/api/nothing-here", headers={"X-Request-ID": "r-404"})
    assert response.status_code == 404
    assert response.json == {"code": 404, "message": "Not Found", "data": None,
                             "request_id": "r-404"}


def test_wrong_method_is_a_405_envelope(client):
    response = client.get("/api/auth/login")
    assert response.status_code == 405
    assert response.json["code"] == 405
    assert "POST" in response.headers["Allow"]


def test_body_over_the_limit_is_a_413_envelope(client, settings):
    body = b"{" + b" " * settings.max_content_length + b"}"
    response = client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json["code"] == 413


def test_unexpected_errors_are_a_500_envelope_without_trace(settings):
    from web.app import create_app

    app = create_app(settings)

    @app.get("/api/_boom_for_test")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/api/_boom_for_test")
    assert response.status_code == 500
    assert response.json["message"] == "Internal server error"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/auth/login", b"\xff\xfe\x00"),
    ("POST", "/api/auth/login", b'{"username": {"$gt": ""}, "password": null}'),
    ("POST", "/api/auth/refresh", b"{}"),
    ("GET", "/api/auth/me", None),
    ("PATCH", "/api/admin/users/abc", b"{}"),
])
def test_hostile_input_never_yields_a_500(client, method, path, body):
    response = client.open(path, method=method, data=body, content_type="application/json")
    assert response.status_code < 500
    assert response.json["code"] == response.status_code
