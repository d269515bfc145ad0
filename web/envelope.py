"""The response envelope every /api response uses: {code, message, data[, errors], request_id}."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify
from pydantic import BaseModel


def envelope(status: int, message: str, data: Any = None, *, errors: list | None = None,
             headers: dict | None = None):
    """`data` is a response model (web/response_models.py), a list of them, or plain JSON."""
    body: dict[str, Any] = {"code": status, "message": message, "data": _plain(data)}
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


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_unset=True)
    if isinstance(data, list):
        return [_plain(item) for item in data]
    return data
