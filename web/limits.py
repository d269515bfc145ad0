"""Rate limits: Flask-Limiter on the shared Redis, so every process and instance counts together.

Each app gets its own Limiter and all limits are declared here, in one table, rather than in
decorators spread over the views.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from common.settings import Settings


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Attach a limiter and its limits; call after the blueprints are registered."""
    limiter = Limiter(
        key_func=get_remote_address,
        app=app,
        storage_uri=settings.redis_connection_url,
        storage_options={"socket_timeout": settings.redis_socket_timeout,
                         "socket_connect_timeout": settings.redis_socket_timeout},
        strategy="moving-window",
        headers_enabled=True,
        # Storage errors propagate and become a 503: limits never silently switch off.
        swallow_errors=False,
        key_prefix="rl",
    )
    _limit(app, limiter, "auth.login", settings.login_failure_limit,
           key_func=login_attempt_key, deduct_when=lambda response: response.status_code == 401)
    return limiter


def _limit(app: Flask, limiter: Limiter, endpoint: str, limit: str, **options) -> None:
    app.view_functions[endpoint] = limiter.limit(limit, **options)(app.view_functions[endpoint])


def login_attempt_key() -> str:
    """Failed logins are counted per username and client address."""
    payload = request.get_json(force=True, silent=True)
    username = payload.get("username") if isinstance(payload, dict) else None
    if not isinstance(username, str):
        username = ""
    return f"login:{username.strip().lower()[:64]}:{get_remote_address()}"
