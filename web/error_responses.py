"""An error in the shape its surface speaks: the envelope on /api and elsewhere, OpenAI's error
object on /v1. Every error response is built here, so the two surfaces cannot drift."""

from __future__ import annotations

from web.envelope import envelope
from web.openai_errors import is_openai_request, openai_error


def error_response(status: int, message: str, *, code: str | None = None,
                   errors: list[dict] | None = None, headers: dict | None = None):
    if is_openai_request():
        return openai_error(status, message, code=code, errors=errors, headers=headers)
    return envelope(status, message, errors=errors, headers=headers)
