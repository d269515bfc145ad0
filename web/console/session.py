"""Signing in and out of the console, the check every console page makes, and the token the
playground calls /v1 with."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import abort, g, jsonify, redirect, render_template, request, session, url_for

from common.accounts import users
from common.errors import PermissionDenied
from web.authentication import (
    PLAYGROUND_TOKEN_SECONDS,
    authenticate_session,
    session_access_token,
)
from web.console import bp, csrf, signed_in
from web.context import db_session, services

# Pages anyone may open: the sign-in form and the assets it needs.
PUBLIC_ENDPOINTS = {"console.sign_in_page", "console.sign_in", "console.static"}


@bp.before_request
def _check_session():
    """Every console request: CSRF on anything that is not a read, then the session."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()  # a 400 (CSRFError) when the form field or X-CSRFToken is missing
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    user = _session_user()
    if user is None:
        session.clear()
        if request.headers.get("HX-Request") == "true" or request.method != "GET":
            abort(401)
        return redirect(url_for("console.sign_in_page", next=request.full_path))
    g.console_user = user
    return None


def _session_user():
    try:
        user_id, session_id = int(session["uid"]), str(session["sid"])
        generation, username = int(session["gen"]), str(session["username"])
    except (KeyError, TypeError, ValueError):
        return None
    return authenticate_session(user_id=user_id, session_id=session_id,
                                generation=generation, username=username)


def admin_only(view):
    """Operator pages: refused on the server (403) to anyone but an admin."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not signed_in().is_admin:
            raise PermissionDenied("Administrator role required")
        return view(*args, **kwargs)
    return wrapper


@bp.get("/login")
def sign_in_page():
    return render_template("console/login.html", next=_safe_next(request.args.get("next")))


@bp.post("/login")
def sign_in():
    """The API's login, as a form: the same user check, the same session row, the same limits
    (web.rate_limits wraps this view with the login's), and the same answer for unknown users,
    wrong passwords and disabled accounts."""
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    target = _safe_next(request.form.get("next"))
    if not 0 < len(username) <= 64 or not 0 < len(password) <= 1024:
        return render_template("console/login.html", next=target, username=username[:64],
                               error="Enter your username and password."), 400
    db = db_session()
    user = users.authenticate(session=db, username=username, password=password)
    if user is None:
        return render_template("console/login.html", next=target, username=username,
                               error="Invalid username or password."), 401
    settings = services().settings
    session_id = services().auth_state.open_session(db, user, settings.jwt_refresh_token_expires)
    db.commit()  # the session row, and a rehashed password
    session.clear()  # a new session id and CSRF token for the signed-in user
    session.permanent = True
    session.update(uid=user.id, sid=session_id, gen=int(user.token_generation or 0),
                   username=user.username)
    return redirect(target or url_for("console.playground"), code=303)


@bp.post("/logout")
def sign_out():
    """Like the API's logout: the session row is marked ended, so its cookie and every
    token minted for it (the playground's) are refused by every process from now on."""
    user = signed_in()
    services().auth_state.end_session(session["sid"], user.id)
    session.clear()
    return redirect(url_for("console.sign_in_page"), code=303)


@bp.post("/token")
def v1_token():
    """A short-lived access token of this session for the playground's fetch to /v1 (a POST
    with the CSRF header: another site can neither send it nor read the answer)."""
    user = signed_in()
    token = session_access_token(user, session_id=session["sid"], generation=session["gen"])
    return jsonify({"access_token": token, "token_type": "Bearer",
                    "expires_in": PLAYGROUND_TOKEN_SECONDS})


def _safe_next(target: str | None) -> str | None:
    """Only a path inside the console: never another host (an open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/") \
            or target.startswith("//"):
        return None
    return target
