"""JWT authentication: token issue, the shared revocation/role check, and route guards.

Every authentication failure is a 401 in its surface's error shape (flask-jwt-extended answers
422 for some by default). Both tokens of a login carry its session id (`sid`, a
`login_sessions` row) and the user's token generation (`gen`): a logout with either token ends
the session, and bumping the generation ends all of the user's sessions
(common.accounts.session_state). Tokens without these claims (issued before they existed) are
refused: their owners log in once more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time

import jwt as pyjwt
from flask import Flask, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    current_user,
    get_jwt,
    verify_jwt_in_request,
)
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.tokens import _decode_jwt as decode_verified
from jwt import ExpiredSignatureError
from sqlalchemy.orm import Session

from common.accounts.api_keys import KeyState, looks_like_key
from common.accounts.models import Role, User
from common.accounts.signing_key import jwt_secret
from common.errors import AuthenticationFailed, PermissionDenied
from common.infra.log import bind_log_context
from common.infra.settings import Settings
from web.context import services
from web.error_responses import error_response

logger = logging.getLogger(__name__)


class SingleDecodeJWTManager(JWTManager):
    """flask-jwt-extended's manager, parsing each presented token once.

    Its decoder parses a token unverified twice (claims, then header) before the verified
    decode, so that a `decode_key_loader` could pick the key by them; this app has one key
    and no such loader, so the verified decode alone does the same checks, at 40 % of the
    cost (measured: 24 + 17 µs for the unverified parses, 36 µs for the verified one)."""

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None,
                                allow_expired: bool = False) -> dict:
        kwargs = {
            "algorithms": jwt_config.decode_algorithms, "audience": jwt_config.decode_audience,
            "csrf_value": csrf_value, "encoded_token": encoded_token,
            "identity_claim_key": jwt_config.identity_claim_key,
            "issuer": jwt_config.decode_issuer, "leeway": jwt_config.leeway,
            "secret": jwt_config.decode_key, "verify_aud": jwt_config.decode_audience is not None,
            "verify_sub": jwt_config.verify_sub}
        try:
            return decode_verified(**kwargs, allow_expired=allow_expired)
        except ExpiredSignatureError as exc:  # what the expired-token callback is handed
            exc.jwt_header = pyjwt.get_unverified_header(encoded_token)  # type: ignore
            exc.jwt_data = decode_verified(**kwargs, allow_expired=True)  # type: ignore
            raise


jwt = SingleDecodeJWTManager()


@dataclasses.dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def init_app(app: Flask, settings: Settings) -> None:
    app.config.update(
        JWT_SECRET_KEY=jwt_secret(settings),
        JWT_ALGORITHM="HS256",
        JWT_TOKEN_LOCATION=["headers"],
        JWT_COOKIE_CSRF_PROTECT=False,  # header tokens only: no cookie, no CSRF claim
        JWT_ACCESS_TOKEN_EXPIRES=dt.timedelta(seconds=settings.jwt_access_token_expires),
        JWT_REFRESH_TOKEN_EXPIRES=dt.timedelta(seconds=settings.jwt_refresh_token_expires),
    )
    jwt.init_app(app)




def issue_tokens(session: Session, user: User) -> dict:
    """An access and a refresh token for a new login session, recorded in the caller's
    transaction (commit before answering)."""
    session_id = services().auth_state.open_session(
        session, user, services().settings.jwt_refresh_token_expires)
    claims = {"role": user.role.value, "username": user.username, "sid": session_id,
              "gen": int(user.token_generation or 0)}
    refresh = create_refresh_token(str(user.id), additional_claims=claims)
    access = create_access_token(str(user.id), fresh=True, additional_claims=claims)
    return {"access_token": access, "refresh_token": refresh}


def refreshed_access_token() -> str:
    """A new access token for the session of the presented (already verified) refresh token."""
    token = get_jwt()
    return create_access_token(token["sub"], fresh=False, additional_claims={
        "role": current_user.role.value, "username": current_user.username,
        "sid": token["sid"], "gen": token["gen"]})


def revoke_current_session() -> None:
    """End the presented token's login session: its access and refresh tokens alike."""
    token = get_jwt()
    services().auth_state.end_session(token["sid"], int(token["sub"]))


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate() -> CurrentUser:
    """Verify the request's access token or API key, once per request (the rate limiter
    asks first)."""
    if not g.get("authenticated"):
        token = _bearer()
        if token is not None and looks_like_key(token):
            _authenticate_key(token)
        else:
            verify_jwt_in_request()
        g.authenticated = True
        bind_log_context(user_id=current_user.id)
    return current_user


def authenticate_session(*, user_id: int, session_id: str, generation: int,
                         username: str) -> CurrentUser | None:
    """The console's sign-in (a login session kept in its cookie), checked like a token of
    that session: None when the session ended, the user's generation moved on, or the user
    is disabled. On success the request is authenticated as that user for everything that
    reads `current_user` (job submission, limits, budgets), exactly as a token would be."""
    check = services().auth_state.check(session_id=session_id, user_id=user_id,
                                        generation=generation)
    if check.revoked or check.user is None or not check.user.is_active:
        return None
    user = CurrentUser(id=user_id, username=username, role=check.user.role)
    g.user_state = check.user
    g._jwt_extended_jwt_user = {"loaded_user": user}
    g._jwt_extended_jwt = {"sub": str(user_id), "sid": session_id, "gen": generation}
    g._jwt_extended_jwt_header = {}
    g.authenticated = True
    bind_log_context(user_id=user_id)
    return user


# The playground asks for a new one before each call, so it can be short.
PLAYGROUND_TOKEN_SECONDS = 300


def session_access_token(user: CurrentUser, *, session_id: str, generation: int) -> str:
    """An access token of the console session (the playground's calls to /v1): it carries the
    session's id, so signing out revokes it like any token of that session."""
    return create_access_token(str(user.id), fresh=False, expires_delta=dt.timedelta(
        seconds=PLAYGROUND_TOKEN_SECONDS), additional_claims={
        "role": user.role.value, "username": user.username, "sid": session_id,
        "gen": generation})


def api_key() -> KeyState | None:
    """The API key this request authenticated with (None: a login's token)."""
    return g.get("api_key")


def _authenticate_key(secret: str) -> None:
    """An API key acts as its user, with the user's live tier and active flag; a revoked,
    expired or unknown key, or one whose user is disabled, is a 401."""
    svc = services()
    state = svc.api_keys.lookup(secret)
    if state is None:
        raise AuthenticationFailed("Invalid or revoked API key", code="invalid_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})
    if state.expired(time.time()):
        raise AuthenticationFailed("API key has expired", code="invalid_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})
    user = svc.auth_state.user(state.user_id)
    if user is None or not user.is_active:
        raise AuthenticationFailed("User account is disabled or no longer exists",
                                   code="invalid_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})
    g.api_key = state
    g.user_state = user
    # What flask_jwt_extended's current_user and get_jwt() read.
    g._jwt_extended_jwt_user = {"loaded_user": CurrentUser(id=state.user_id, username="",
                                                           role=user.role)}
    g._jwt_extended_jwt = {}
    g._jwt_extended_jwt_header = {}
    svc.api_keys.touch(state.id)


def login_required(fn=None, *, refresh: bool = False, any_token: bool = False,
                   api_keys: bool = False):
    """Require a valid, unrevoked token of an active user; with `api_keys`, an API key will
    do too (elsewhere a key is a 403: managing keys, users and tiers needs a login)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if refresh or any_token:
                verify_jwt_in_request(refresh=refresh, verify_type=not any_token)
                bind_log_context(user_id=current_user.id)
            else:
                authenticate()
                if not api_keys and api_key() is not None:
                    raise PermissionDenied("API keys cannot do this; log in with a password",
                                           code="login_required")
            return view(*args, **kwargs)
        return wrapper
    return decorate(fn) if fn else decorate


key_or_login_required = login_required(api_keys=True)


def admin_required(view):
    @functools.wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            raise PermissionDenied("Administrator role required")
        return view(*args, **kwargs)
    return wrapper


def _unauthorized(message: str):
    return error_response(401, message, headers={"WWW-Authenticate": "Bearer"})


@jwt.token_in_blocklist_loader
def _is_revoked(_header: dict, payload: dict) -> bool:
    try:
        user_id, session_id, generation = int(payload["sub"]), payload["sid"], payload["gen"]
    except (KeyError, TypeError, ValueError):
        return True
    if not isinstance(session_id, str) or type(generation) is not int:
        return True
    check = services().auth_state.check(session_id=session_id, user_id=user_id,
                                        generation=generation)
    g.user_state = check.user
    return check.revoked


@jwt.user_lookup_loader
def _current_user(_header: dict, payload: dict) -> CurrentUser | None:
    state = g.get("user_state")
    if state is None or not state.is_active:
        return None
    # The live role wins over the role claim, so a role change applies on the next request.
    return CurrentUser(id=int(payload["sub"]), username=payload.get("username", ""),
                       role=state.role)


@jwt.unauthorized_loader
def _missing_token(reason: str):
    return _unauthorized("Missing or malformed Authorization header (expected 'Bearer <token>')")


@jwt.invalid_token_loader
def _invalid_token(reason: str):
    return _unauthorized(f"Invalid token: {reason}")


@jwt.expired_token_loader
def _expired_token(_header, _payload):
    return _unauthorized("Token has expired")


@jwt.revoked_token_loader
def _revoked_token(_header, _payload):
    return _unauthorized("Token has been revoked")


@jwt.user_lookup_error_loader
def _inactive_user(_header, _payload):
    return _unauthorized("User account is disabled or no longer exists")


@jwt.needs_fresh_token_loader
def _stale_token(_header, _payload):
    return _unauthorized("A fresh login is required")
