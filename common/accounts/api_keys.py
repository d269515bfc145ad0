"""API keys: a program's own revocable credential, acting as its user narrowed by its limits.

A secret is `bk_` and 43 URL-safe characters from `secrets.token_urlsafe(32)` (256 bits). It
is shown once; the database keeps only HMAC-SHA256(secret) under a server key. A fast keyed
hash is right here, unlike for passwords: a slow hash (Argon2) protects low-entropy secrets
from guessing, but nobody can enumerate 2**256 candidates however fast the hash, so slowness
would only cost every request ~50 ms; and an unsalted, deterministic digest is what lets the
lookup be one indexed equality (a salted hash would need the key's id in the secret). The HMAC
key (API_KEY_HASH_SECRET, or one derived from JWT_SECRET_KEY) means a stolen table alone does
not even let anyone test a candidate.

Like login sessions (common.accounts.session_state), MySQL is the truth and Redis a cache of
it: each request reads the key's entry in one round trip; a miss (expired, flushed, a Redis
restarted empty) reads the row again, so losing Redis makes a check slower, never more
permissive. Writers drop the entry before their commit and store the new state after it;
readers fill a missing entry with SET NX, so a revoke is seen by every process at its next
request, and a revoked key stays refused through a Redis restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from decimal import Decimal

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.accounts.models import ApiKey
from common.errors import NotFound, ValidationFailed
from common.infra.orm import utcnow
from common.infra.settings import BudgetSpec, Settings

logger = logging.getLogger(__name__)

PREFIX = "bk_"
CACHE_KEY = "auth:apikey:{}"
CACHE_TTL = 300
LAST_USED_KEY = "auth:apikey-used:{}"
LAST_USED_EVERY = 60  # seconds: last_used_at is written at most this often per key
_REVOKED = "revoked"
MAX_KEYS_PER_USER = 100


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def hash_key(settings: Settings, jwt_secret: str) -> bytes:
    """The HMAC key: API_KEY_HASH_SECRET, else one derived from the JWT secret (never the JWT
    secret itself, so neither use can stand in for the other)."""
    if settings.api_key_hash_secret is not None and \
            settings.api_key_hash_secret.get_secret_value():
        return settings.api_key_hash_secret.get_secret_value().encode()
    return hmac.new(jwt_secret.encode(), b"api-key-hash", hashlib.sha256).digest()


def hash_secret(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class KeyState:
    """What the per-request check needs of a key (its cached entry)."""

    id: int
    user_id: int
    expires_at: float | None  # epoch seconds
    models: tuple[str, ...] | None
    rpm_limit: int | None
    tpm_limit: int | None
    budget: BudgetSpec | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def encode(self) -> str:
        return json.dumps({
            "id": self.id, "user_id": self.user_id, "expires_at": self.expires_at,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm_limit, "tpm": self.tpm_limit,
            "budget": self.budget.model_dump(mode="json") if self.budget else None})

    @classmethod
    def decode(cls, raw: str) -> KeyState:
        data = json.loads(raw)
        return cls(id=data["id"], user_id=data["user_id"], expires_at=data["expires_at"],
                   models=tuple(data["models"]) if data["models"] is not None else None,
                   rpm_limit=data["rpm"], tpm_limit=data["tpm"],
                   budget=BudgetSpec(**data["budget"]) if data["budget"] else None)

    @classmethod
    def of(cls, key: ApiKey) -> KeyState:
        expires = key.expires_at.replace(tzinfo=dt.UTC).timestamp() if key.expires_at else None
        return cls(id=key.id, user_id=key.user_id, expires_at=expires,
                   models=tuple(key.models) if key.models is not None else None,
                   rpm_limit=key.rpm_limit, tpm_limit=key.tpm_limit, budget=budget_of(key))


def budget_of(row) -> BudgetSpec | None:
    """The budget a key (or user) row sets for itself, if any."""
    if row.budget_amount is None or row.budget_period is None:
        return None
    return BudgetSpec(amount=Decimal(row.budget_amount), period=row.budget_period)


class ApiKeys:
    """Creates, changes, revokes and checks API keys."""

    def __init__(self, *, hash_key: bytes, redis_client: redis.Redis,
                 session_factory: Callable[[], Session]) -> None:
        self.hash_key = hash_key
        self.redis = redis_client
        self.session_factory = session_factory

    # --- the per-request check -------------------------------------------------------------
    def lookup(self, secret: str) -> KeyState | None:
        """The live key this secret names, or None (unknown or revoked). Expiry is the
        caller's check, against its clock."""
        digest = hash_secret(self.hash_key, secret)
        cache_key = CACHE_KEY.format(digest)
        raw = self.redis.get(cache_key)
        if raw is not None:
            text = raw.decode() if isinstance(raw, bytes) else raw
            return None if text == _REVOKED else KeyState.decode(text)
        with self.session_factory() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
            if row is None:
                return None  # unknown secrets are not cached: nobody may fill Redis with them
            state = None if row.revoked_at is not None else KeyState.of(row)
        self.redis.set(cache_key, state.encode() if state else _REVOKED, ex=CACHE_TTL, nx=True)
        return state

    def touch(self, key_id: int) -> None:
        """Record that the key was used, at most once a minute per key (all processes)."""
        try:
            if not self.redis.set(LAST_USED_KEY.format(key_id), "1", ex=LAST_USED_EVERY,
                                  nx=True):
                return
            with self.session_factory() as session:
                session.execute(update(ApiKey).where(ApiKey.id == key_id)
                                .values(last_used_at=utcnow()))
                session.commit()
        except Exception as exc:  # a convenience: never fail the request for it
            logger.warning("api key last_used_at not recorded key_id=%s: %s", key_id, exc)

    # --- management ------------------------------------------------------------------------
    def create(self, session: Session, *, user_id: int, name: str,
               expires_at: dt.datetime | None = None, models: list[str] | None = None,
               rpm_limit: int | None = None, tpm_limit: int | None = None,
               budget: BudgetSpec | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once); committed here."""
        count = len(session.scalars(select(ApiKey.id).where(
            ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))).all())
        if count >= MAX_KEYS_PER_USER:
            raise ValidationFailed(f"At most {MAX_KEYS_PER_USER} live keys per user",
                                   code="too_many_keys")
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(user_id=user_id, name=name, prefix=secret[:8], last_four=secret[-4:],
                     secret_hash=hash_secret(self.hash_key, secret), models=models,
                     rpm_limit=rpm_limit, tpm_limit=tpm_limit, expires_at=expires_at,
                     budget_amount=budget.amount if budget else None,
                     budget_period=budget.period if budget else None, created_at=utcnow())
        session.add(key)
        session.commit()
        return key, secret

    @staticmethod
    def get(session: Session, key_id: int, *, user_id: int | None) -> ApiKey:
        """The key, if `user_id` owns it (None: any user's, for admins)."""
        key = session.get(ApiKey, key_id)
        if key is None or (user_id is not None and key.user_id != user_id):
            raise NotFound("API key not found", code="api_key_not_found")
        return key

    @staticmethod
    def list(session: Session, *, user_id: int | None, include_revoked: bool = False
             ) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.id)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return list(session.scalars(query))

    def change(self, session: Session, key: ApiKey, **changes) -> ApiKey:
        """Change a key's name or limits; every process sees it from its next request."""
        if key.revoked_at is not None:
            raise NotFound("API key not found", code="api_key_not_found")
        for name, value in changes.items():
            if name == "budget":
                key.budget_amount = value.amount if value else None
                key.budget_period = value.period if value else None
            else:
                setattr(key, name, value)
        self._commit(session, key)
        return key

    def revoke(self, session: Session, key: ApiKey) -> ApiKey:
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            self._commit(session, key)
        return key

    def _commit(self, session: Session, key: ApiKey) -> None:
        cache_key = CACHE_KEY.format(key.secret_hash)
        self.redis.delete(cache_key)  # before the commit: nobody goes on reading the old state
        session.commit()
        value = _REVOKED if key.revoked_at is not None else KeyState.of(key).encode()
        try:
            self.redis.set(cache_key, value, ex=CACHE_TTL)
        except redis.RedisError as exc:
            logger.warning("api key cache write failed after commit (%s); readers refill it "
                           "from the database", exc)
