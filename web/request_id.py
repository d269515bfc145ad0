"""X-Request-ID: echoed when the client sends a sane one, generated otherwise."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

from common.infra.log import bind_log_context

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def init_app(app: Flask) -> None:
    @app.before_request
    def _assign_request_id():
        supplied = request.headers.get(HEADER, "")
        g.request_id = supplied if _ACCEPTABLE.match(supplied) else uuid.uuid4().hex
        bind_log_context(request_id=g.request_id, user_id=None, job_id=None)

    @app.after_request
    def _echo_request_id(response):
        response.headers[HEADER] = g.get("request_id") or uuid.uuid4().hex
        return response
