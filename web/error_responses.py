"""An error in the shape its surface speaks: the envelope on /api and elsewhere, OpenAI's error
object on /v1, an HTML page (or, for an htmx request, a fragment) in the console. Every error
response is built here, so the surfaces cannot drift."""

from __future__ import annotations

from flask import render_template, request

from web.envelope import envelope
from web.openai_errors import is_openai_request, openai_error


def error_response(status: int, message: str, *, code: str | None = None,
                   errors: list[dict] | None = None, headers: dict | None = None):
    if is_openai_request():
        return openai_error(status, message, code=code, errors=errors, headers=headers)
    if request.blueprint == "console":
        return _console_error(status, message, errors, headers)
    return envelope(status, message, errors=errors, headers=headers)


def _console_error(status: int, message: str, errors: list[dict] | None,
                   headers: dict | None):
    fragment = request.headers.get("HX-Request") == "true"
    page = render_template("console/_error.html" if fragment else "console/error.html",
                           status=status, message=message, errors=errors or [])
    # An htmx request's fragment goes where the form's result would have gone (the console
    # tells htmx to swap error answers too), so the user sees the reason in place.
    return page, status, dict(headers or {})
