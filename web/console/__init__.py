"""The web console under /console: server-rendered pages for users (playground, jobs, usage,
API keys) and operators (users, spend, the system), thin over the same use cases in common/
that the API calls.

Sign-in keeps a login session (a `login_sessions` row, as an API login opens) in a signed
cookie: HttpOnly, SameSite=Lax, Secure outside development. Every console request checks it
like a token of that session (web.authentication.authenticate_session), so signing out, a
password change, a deactivation or an admin's revoke end it everywhere at once. Every form
and fetch carries a CSRF token (Flask-WTF); the Content-Security-Policy allows no inline
script or style, and assets come from web/console/static/vendor (scripts/vendor-assets), so
the console needs nothing from another origin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from flask import Blueprint, Flask, g, request
from flask_wtf.csrf import CSRFProtect

from common.accounts.signing_key import jwt_secret
from common.infra.settings import Settings

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
csrf = CSRFProtect()

CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # uPlot draws on a canvas; data: for its legend markers
    "media-src 'self'",  # a video job's stored MP4 (/api/jobs/<id>/media/0), Range-served
    "connect-src 'self'",  # the playground's fetch to /v1 and /console
    "font-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
))
SESSION_COOKIE = "bailian_console"


def session_secret(settings: Settings) -> str:
    """The key that signs the console's cookie: derived from the platform's signing key (one
    secret to manage), distinct from it so a cookie can never pass for a token or a link."""
    return hmac.new(jwt_secret(settings).encode(), b"console-session",
                    hashlib.sha256).hexdigest()


def init_app(app: Flask, settings: Settings) -> None:
    app.config.update(
        SECRET_KEY=session_secret(settings),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=not settings.is_development,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",  # the playground's fetch to /v1 needs no cookie, but /console does
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=settings.jwt_refresh_token_expires),
        # The API authenticates by header (no ambient credential), so only the console is
        # checked: its views call csrf.protect() (web/console/session.py).
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the signed-in session
    )
    csrf.init_app(app)
    from web.console import admin, pages, session  # noqa: F401 - the views register on bp

    app.register_blueprint(bp)


@bp.after_request
def _security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "console.static":
        # Pages show a user's own data: never from a shared cache, never after sign-out.
        response.headers["Cache-Control"] = "no-store"
    else:
        response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def signed_in():
    return g.get("console_user")
