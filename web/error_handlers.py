"""Every error becomes the error response of its surface (the envelope, or OpenAI's error object on
/v1), registered once; no stack trace ever reaches a client."""

from __future__ import annotations

import logging

import redis
from flask import Flask
from flask_wtf.csrf import CSRFError
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from common.errors import AppError, ServiceUnavailable
from web.error_responses import error_response

logger = logging.getLogger(__name__)

# Infrastructure failures: the client did nothing wrong and may retry.
DEPENDENCY_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BrokerError,
    OperationalError,  # database unreachable, lost connection, lock wait timeout
    InterfaceError,
)


def init_app(app: Flask) -> None:
    @app.errorhandler(AppError)
    def _app_error(exc: AppError):
        return error_response(exc.status, exc.message, code=exc.code, errors=exc.errors,
                              headers=exc.headers)

    @app.errorhandler(CSRFError)
    def _csrf_refused(exc: CSRFError):
        # The console's forms and fetches (web/console): no token, no action.
        return error_response(400, f"Refused: {exc.description}", code="csrf_failed")

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(413, f"Request body exceeds the limit of {limit} bytes")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        message = f"Rate limit exceeded: {exc.description}" if exc.code == 429 else exc.name
        return error_response(exc.code or 500, message, headers=headers)

    def _dependency_down(exc):
        logger.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return _app_error(ServiceUnavailable())

    for exc_type in DEPENDENCY_ERRORS:
        app.register_error_handler(exc_type, _dependency_down)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unhandled error")
        return error_response(500, "Internal server error")

