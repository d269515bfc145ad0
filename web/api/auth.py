"""Login, refresh, logout and the current user."""

from __future__ import annotations

from flask import Blueprint
from flask_jwt_extended import current_user

from common.accounts import users
from common.accounts.models import User
from common.accounts.passwords import verify_password
from common.errors import AuthenticationFailed, PermissionDenied
from web.authentication import (
    issue_tokens,
    login_required,
    refreshed_access_token,
    revoke_current_session,
)
from web.context import db_session, services
from web.envelope import ok
from web.openapi import ERROR, documented
from web.request_models import ChangePasswordRequest, LoginRequest
from web.response_models import LoginData, RefreshData, UserData
from web.serializers import user_data
from web.validation import parse_body

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.post("/login")
@documented(summary="Log in: an access and a refresh token", auth=False, tag="auth",
            body=LoginRequest, responses={200: LoginData, 401: ERROR, 429: ERROR, 503: ERROR},
            description="Unknown users and wrong passwords get the same 401. Failed attempts "
                        "per account and client, failed attempts per account from all "
                        "clients but those it logged in from, and attempts per client are "
                        "limited (429). Spellings the database matches to one user (case, "
                        "accents, trailing spaces) count as that account.")
def login():
    body = parse_body(LoginRequest)
    session = db_session()
    user = users.authenticate(session=session, username=body.username, password=body.password)
    if user is None:
        # One answer for unknown users, wrong passwords and disabled accounts: no enumeration.
        raise AuthenticationFailed("Invalid username or password", code="invalid_credentials")
    tokens = issue_tokens(session, user)
    session.commit()  # the session row, and a rehashed password
    data = _login_data(tokens, user)
    return ok(data, "Login successful")


@bp.post("/refresh")
@documented(summary="A new access token for the presented refresh token", tag="auth",
            responses={200: RefreshData})
@login_required(refresh=True)
def refresh():
    data = {
        "access_token": refreshed_access_token(),
        "token_type": "Bearer",
        "expires_in": services().settings.jwt_access_token_expires,
    }
    return ok(data, "Token refreshed")


@bp.post("/logout")
@documented(summary="Revoke the presented token and its whole login session", tag="auth",
            responses={200: ERROR})
@login_required(any_token=True)
def logout():
    revoke_current_session()
    return ok(None, "Logout successful")


@bp.get("/me")
@documented(summary="The current user, with role", tag="auth", responses={200: UserData})
@login_required
def me():
    user = db_session().get(User, current_user.id)
    return ok(user_data(user))


@bp.post("/password")
@documented(summary="Change your password: every session ends, this one gets new tokens",
            tag="auth", body=ChangePasswordRequest,
            responses={200: LoginData, 403: ERROR, 429: ERROR},
            description="The current password is required (403 when wrong; failures are "
                        "limited per user like logins, 429). The new one "
                        "follows the password policy (400 naming the rule): at least 8 "
                        "characters (12 for admins), at most 256, not a common or breached "
                        "password. All of the user's tokens, on every device, are refused "
                        "afterwards; the answer carries a new pair for the caller.")
@login_required
def change_password():
    body = parse_body(ChangePasswordRequest)
    session = db_session()
    user = session.get(User, current_user.id)
    if not verify_password(user.password_hash, body.current_password):
        raise PermissionDenied("The current password is wrong", code="wrong_password")
    users.set_password(session=session, auth_state=services().auth_state, user=user,
                       password=body.new_password, field="new_password")
    tokens = issue_tokens(session, user)
    session.commit()
    data = _login_data(tokens, user)
    return ok(data, "Password changed; every other session was ended")


def _login_data(tokens: dict, user: User) -> dict:
    return {
        **tokens,
        "token_type": "Bearer",
        "expires_in": services().settings.jwt_access_token_expires,
        "user": {"id": user.id, "username": user.username, "email": user.email},
    }
