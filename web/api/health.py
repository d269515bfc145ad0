"""Liveness, readiness and a plain health check for load balancers and orchestrators."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify

from common import VERSION
from common.infra.health import CONNECTED, dependency_checks, run_checks
from web.context import services
from web.openapi import Raw, documented
from web.response_models import Health, Liveness, Readiness

bp = Blueprint("health", __name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@bp.get("/health")
@documented(summary="Is the process up", auth=False, tag="health",
            responses={200: Raw("application/json", Health)})
def health():
    return jsonify(status="healthy", timestamp=_now())


@bp.get("/health/live")
@documented(summary="Liveness probe", auth=False, tag="health",
            responses={200: Raw("application/json", Liveness)})
def live():
    return jsonify(status="alive", timestamp=_now(), service="bailian-backend", version=VERSION)


@bp.get("/health/ready")
@documented(summary="Readiness probe: MySQL and Redis, each checked within a short timeout",
            auth=False, tag="health",
            responses={200: Raw("application/json", Readiness),
                       503: Raw("application/json", Readiness)})
def ready():
    settings = services().settings
    checks = run_checks(dependency_checks(settings), settings.health_check_timeout)
    checks["dashscope_api"] = "configured" if settings.dashscope_configured else "not_configured"
    checks["function_compute"] = ("configured" if settings.function_compute_configured
                                  else "not_configured")
    is_ready = checks["database"] == CONNECTED and checks["redis"] == CONNECTED
    body = {"status": "ready" if is_ready else "not_ready", "timestamp": _now(), "checks": checks}
    return jsonify(body), 200 if is_ready else 503
