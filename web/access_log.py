"""One JSON line per request, carrying the request id that follows the job to the worker."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

logger = logging.getLogger("web.access")


def init_app(app: Flask) -> None:
    @app.before_request
    def _start():
        g.access_started = time.perf_counter()

    @app.after_request
    def _log(response):
        started = g.get("access_started")
        duration_ms = (time.perf_counter() - started) * 1000 if started else None
        logger.info("%s %s %s", request.method, request.path, response.status_code,
                    extra={"method": request.method, "path": request.path,
                           "status": response.status_code,
                           "duration_ms": round(duration_ms, 2) if duration_ms else None,
                           "job_id": response.headers.get("X-Job-ID")})
        return response
