"""The response envelope every /api response uses: {code, message, data[, errors], request_id}."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify


def envelope(status: int, message: str, data: Any = None, *, errors: list | None = None,
             headers: dict | None = None):
    body: dict[str, Any] = {"code": status, "message": message, "data": data}
    if errors is not None:
        body["errors"] = errors
    body["request_id"] = g.get("request_id")
    response = jsonify(body)
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def ok(data: Any = None, message: str = "Request successful", status: int = 200,
       headers: dict | None = None):
    return envelope(status, message, data, headers=headers)
