"""Rate limits, shared by every process and instance through Redis, declared in one place.

- chat and generation: per authenticated user and endpoint, by the user's live tier. Hits
  are counted in an exact sliding window (`common.infra.sliding_window`) whose key does not
  depend on the limit, so a tier change applies from the next request *and* the hits already
  made this minute count against the new limit (a demotion cannot buy a fresh allowance).
- login: per client address, plus failed attempts per account and client address, plus failed
  attempts per account from all addresses together (Flask-Limiter, which can count only the
  failures). The account is the user the name would log in as (by id, so `bob`, `BOB`, `bob `
  and `bób` share one budget), else a canonical spelling of the name. The per-account limit
  slows a guesser spread over many addresses; a stranger cannot use it to lock the owner out,
  because addresses the account logged in from in the last 30 days are exempt from it, and
  elsewhere it counts only failures in a short window, so it lifts minutes after the guessing
  stops.

Redis unreachable: "closed" (default) answers 503 with Retry-After before anything is created;
"local" counts per process until Redis is back (limits times the number of web processes).
Never a 500, never silently unlimited.

Counted: each 429 in rate_limit_rejections_total{endpoint,tier} and each check made without
Redis in rate_limit_storage_errors_total{policy}, for the tiered and the login limits alike.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math

import redis
from flask import Flask, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse

from common.accounts import users
from common.billing.token_limits import reset_text
from common.errors import ServiceUnavailable, TooManyRequests
from common.infra.metrics import RATE_LIMIT_REJECTIONS, RATE_LIMIT_STORAGE_ERRORS
from common.infra.settings import Settings
from common.infra.sliding_window import Decision, LocalSlidingWindow, SlidingWindow
from web.authentication import api_key, authenticate
from web.context import db_session
from web.validation import request_json

logger = logging.getLogger(__name__)

# Limit name -> the views that share its budget (/v1 chat counts with /api chat, /v1 images
# with /api generation).
TIERED_ENDPOINTS = {"chat": ("chat.chat_completions", "openai.chat_completions"),
                    "generation": ("generation.generation", "generation.image_edit",
                                   "openai.images_generations", "console.playground_image"),
                    "embeddings": ("openai.embeddings",),
                    "video": ("generation.video",)}
LOGIN = "login"
# The API's login and the console's sign-in share every login limit (same keys, same budget).
LOGIN_ENDPOINTS = ("auth.login", "console.sign_in")
LOGIN_TIER = "anonymous"  # login limits are per client address: there is no user yet
KNOWN_ADDRESSES_KEY = "login:known:{}"
KNOWN_ADDRESS_DAYS = 30


def init_app(app: Flask, settings: Settings) -> None:
    """Attach the limits; call after the blueprints are registered."""
    storage = settings.rate_limit_storage_url or settings.redis_connection_url
    local = settings.rate_limit_on_redis_down == "local"
    login_metrics = LoginLimitMetrics()
    login_limiter = Limiter(
        key_func=get_remote_address, app=app, enabled=settings.rate_limits_enabled,
        storage_uri=storage, strategy="sliding-window-counter", headers_enabled=True,
        storage_options={"socket_timeout": settings.redis_socket_timeout,
                         "socket_connect_timeout": settings.redis_socket_timeout},
        swallow_errors=False, in_memory_fallback_enabled=local, key_prefix="rl",
        on_breach=login_metrics.breached)
    login_metrics.limiter = login_limiter
    client = redis.Redis.from_url(storage, socket_timeout=settings.redis_socket_timeout,
                                  socket_connect_timeout=settings.redis_socket_timeout)
    known = KnownAddresses(client) if settings.rate_limits_enabled else None
    # Shared limits (one scope): a guess through the console counts against the API's budget.
    login_limits = (
        login_limiter.shared_limit(settings.login_rate_limit, scope=LOGIN),
        login_limiter.shared_limit(settings.login_failure_limit, scope="login-failures",
                                   key_func=login_attempt_key, deduct_when=_failed),
        login_limiter.shared_limit(settings.login_account_failure_limit,
                                   scope="login-account-failures",
                                   key_func=login_account_attempt_key, deduct_when=_failed,
                                   exempt_when=known.is_known if known else None))
    for login in LOGIN_ENDPOINTS:
        if known is not None:
            _wrap(app, login, known.remember_on_success)
        _wrap(app, login, login_metrics.admitted)
        for limit in login_limits:
            _wrap(app, login, limit)
        _wrap(app, login, login_metrics.guard)
    # A stolen access token must not buy unthrottled guesses at the current password.
    _wrap(app, "auth.change_password", login_limiter.limit(
        settings.login_failure_limit, key_func=password_change_key,
        deduct_when=_wrong_password))
    if settings.rate_limits_enabled:
        tiers = TieredLimits(settings, client)
        for name, endpoints in TIERED_ENDPOINTS.items():
            for endpoint in endpoints:
                _wrap(app, endpoint, tiers.guard(name))
        app.after_request(add_rate_limit_headers)


def _failed(response) -> bool:
    return response.status_code == 401


def _wrong_password(response) -> bool:
    return response.status_code == 403


def _wrap(app: Flask, endpoint: str, decorator) -> None:
    app.view_functions[endpoint] = decorator(app.view_functions[endpoint])


class TieredLimits:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.limits = {endpoint: {role: parse(text) for role, text in tiers.items()}
                       for endpoint, tiers in settings.rate_limits.items()}
        self.shared = SlidingWindow(client)
        self.fallback = LocalSlidingWindow() if settings.rate_limit_on_redis_down == "local" \
            else None

    def guard(self, endpoint: str):
        def decorate(view):
            @functools.wraps(view)
            def limited(*args, **kwargs):
                self.check(endpoint)
                return view(*args, **kwargs)
            return limited
        return decorate

    def check(self, endpoint: str) -> None:
        """Count this request against its user's tier, or refuse it with a 429."""
        user = authenticate()  # a bad token is a 401 and is never counted
        item = self.limits[endpoint][user.role]
        key = f"rl:{endpoint}:user:{user.id}"
        window = item.get_expiry()
        credential = api_key()
        if credential is not None and credential.rpm_limit is not None:
            # The key's own requests per minute (every endpoint together), then its user's.
            self._hit(f"rl:key:{credential.id}", credential.rpm_limit, 60,
                      f"Rate limit exceeded: {credential.rpm_limit} per 1 minute for this "
                      "API key", endpoint, user)
        self._hit(key, item.amount, window,
                  f"Rate limit exceeded: {item} for the {user.role.value} tier", endpoint, user)

    def _hit(self, key: str, amount: int, window: float, message: str, endpoint: str,
             user) -> None:
        try:
            decision = self.shared.hit(key, amount, window)
        except redis.RedisError as exc:
            if self.fallback is None:
                RATE_LIMIT_STORAGE_ERRORS.labels("closed").inc()
                logger.warning("rate limit storage unavailable, refusing: %s", exc)
                raise ServiceUnavailable("Rate limiting is temporarily unavailable; retry "
                                         "shortly", code="rate_limit_unavailable") from exc
            RATE_LIMIT_STORAGE_ERRORS.labels("local").inc()
            logger.warning("rate limit storage unavailable, limiting per process: %s", exc)
            decision = self.fallback.hit(key, amount, window)
        previous = g.get("rate_limit")
        if previous is None or decision.remaining <= previous.remaining:
            g.rate_limit = decision  # the headers show the tighter of key and tier
        if not decision.granted:
            RATE_LIMIT_REJECTIONS.labels(endpoint, user.role.value).inc()
            raise TooManyRequests(message, headers={
                "Retry-After": str(math.ceil(decision.retry_after))})


class LoginLimitMetrics:
    """Counts what Flask-Limiter decides on login. Its 429s come through `on_breach`; it has no
    hook for storage errors, so they are told apart around its check: with the in-memory
    fallback (policy local) the check ran on its per-process storage, otherwise (closed) the
    Redis error came out of the check, before the view was entered, and becomes a 503."""

    limiter: Limiter | None = None

    def breached(self, _limit) -> None:
        RATE_LIMIT_REJECTIONS.labels(LOGIN, LOGIN_TIER).inc()
        self._count_fallback()

    def admitted(self, view):
        """Innermost: runs once the login limits have let the request through."""
        @functools.wraps(view)
        def admitted(*args, **kwargs):
            g.login_limits_checked = True
            self._count_fallback()
            return view(*args, **kwargs)
        return admitted

    def guard(self, view):
        """Outermost: a Redis error that left the limits' check itself."""
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except redis.RedisError:
                if self.limiter.enabled and not g.get("login_limits_checked"):
                    RATE_LIMIT_STORAGE_ERRORS.labels("closed").inc()
                raise
        return guarded

    def _count_fallback(self) -> None:
        limiter = self.limiter
        if limiter.enabled and limiter.limiter.storage is not limiter.storage:
            RATE_LIMIT_STORAGE_ERRORS.labels("local").inc()


def add_rate_limit_headers(response):
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        response.headers["X-RateLimit-Limit"] = str(decision.limit)
        response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(decision.frees_at))
    tokens = g.get("token_limit")
    if tokens is not None:  # OpenAI's names; the reset is a duration, as OpenAI writes it
        response.headers["X-RateLimit-Limit-Tokens"] = str(tokens.limit)
        response.headers["X-RateLimit-Remaining-Tokens"] = str(tokens.remaining)
        response.headers["X-RateLimit-Reset-Tokens"] = reset_text(tokens.reset_seconds)
    return response


def login_attempt_key() -> str:
    """Failed logins are counted per account and client address..."""
    return f"login:{login_account()}:{get_remote_address()}"


def password_change_key() -> str:
    return f"password-change:user:{authenticate().id}"


def login_account_attempt_key() -> str:
    """...and per account from every address."""
    return f"login-account:{login_account()}"


def login_account() -> str:
    """The account a login attempt is about: `user:<id>` when the name finds a user the way
    the login itself will (the database's collation), else `name:<canonical spelling>`."""
    if "login_account" not in g:
        # The console's sign-in is a form; the API's login a JSON body, already decoded
        # (web.validation refuses bad bodies).
        payload = request.form if request.blueprint == "console" else request_json()
        username = payload.get("username") if hasattr(payload, "get") else None
        if not isinstance(username, str) or not 0 < len(username) <= 64:
            # The login refuses it with a 400 before any password is checked.
            g.login_account = "name:"
        else:
            user_id = users.account_id(session=db_session(), username=username)
            g.login_account = f"user:{user_id}" if user_id is not None \
                else f"name:{users.canonical_username(username)}"
    return g.login_account


class KnownAddresses:
    """Client addresses an account logged in from successfully, kept KNOWN_ADDRESS_DAYS (as
    hashes: the limiter needs to recognise them, not to read them back)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @staticmethod
    def _key_and_member() -> tuple[str, str]:
        digest = hashlib.blake2b(get_remote_address().encode(), digest_size=16).hexdigest()
        return KNOWN_ADDRESSES_KEY.format(login_account()), digest

    def is_known(self) -> bool:
        key, member = self._key_and_member()
        try:
            return bool(self.client.sismember(key, member))
        except redis.RedisError as exc:
            # Not exempt: the limit itself then fails closed or counts locally, per policy.
            logger.warning("known login addresses unavailable: %s", exc)
            return False

    def remember_on_success(self, view):
        @functools.wraps(view)
        def remembering(*args, **kwargs):
            response = view(*args, **kwargs)
            # 200: the API's login; 303: the console's sign-in redirecting to its page.
            if getattr(response, "status_code", None) in (200, 303):
                key, member = self._key_and_member()
                try:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.sadd(key, member)
                    pipe.expire(key, KNOWN_ADDRESS_DAYS * 24 * 3600)
                    pipe.execute()
                except redis.RedisError as exc:  # the login succeeded; this is a convenience
                    logger.warning("could not remember the login address: %s", exc)
            return response
        return remembering
