"""Session state every process must agree on: revoked tokens and each user's live role.

Both live in Redis so a logout, a role change or a deactivation is seen by the next request of
every web process, with no per-process cache to go stale. The database stays the truth about
users; Redis holds a copy that writers replace around their commit (see `UserDirectory`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

import redis
from sqlalchemy.orm import Session

from common.accounts.models import Role, User

REVOKED_KEY = "auth:revoked:{}"
USER_KEY = "auth:user:{}"
# Bounds how long a copy can outlive a writer whose final SET failed (see UserDirectory.update).
USER_STATE_TTL = 300


@dataclasses.dataclass(frozen=True)
class UserState:
    role: Role
    is_active: bool

    def encode(self) -> str:
        return f"{self.role.value}|{int(self.is_active)}"

    @classmethod
    def decode(cls, raw: str) -> UserState:
        role, active = raw.split("|", 1)
        return cls(Role(role), active == "1")

    @classmethod
    def of(cls, user: User) -> UserState:
        return cls(Role(user.role), bool(user.is_active))


@dataclasses.dataclass(frozen=True)
class TokenCheck:
    revoked: bool
    user: UserState | None  # None: the user no longer exists


class AuthState:
    """Reads and writes the shared session state."""

    def __init__(self, redis_client: redis.Redis, session_factory: Callable[[], Session]) -> None:
        self.redis = redis_client
        self.session_factory = session_factory

    def revoke(self, tokens: Iterable[tuple[str, float]]) -> None:
        """Revoke (jti, exp) pairs until each would have expired anyway."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for jti, expires_at in tokens:
            ttl = max(1, int(expires_at - now) + 1)
            pipe.set(REVOKED_KEY.format(jti), "1", ex=ttl)
        pipe.execute()

    def check(self, *, jtis: list[str], user_id: int) -> TokenCheck:
        """One round trip: are any of these token ids revoked, and what is the user's state?"""
        keys = [REVOKED_KEY.format(j) for j in jtis] + [USER_KEY.format(user_id)]
        *revoked, cached = self.redis.mget(keys)
        if any(revoked):
            return TokenCheck(revoked=True, user=None)
        if cached is not None:
            return TokenCheck(revoked=False, user=UserState.decode(cached))
        return TokenCheck(revoked=False, user=self._load_user(user_id))

    def _load_user(self, user_id: int) -> UserState | None:
        with self.session_factory() as session:
            user = session.get(User, user_id)
            state = UserState.of(user) if user else None
        if state is not None:
            # NX: never overwrite a fresher value a writer stored while we were reading.
            self.redis.set(USER_KEY.format(user_id), state.encode(), ex=USER_STATE_TTL, nx=True)
        return state

    def forget_user(self, user_id: int) -> None:
        self.redis.delete(USER_KEY.format(user_id))

    def remember_user(self, user: User) -> None:
        self.redis.set(USER_KEY.format(user.id), UserState.of(user).encode(), ex=USER_STATE_TTL)
