"""Session state every process must agree on: which login sessions are over, and each user's
live role, active flag and token generation.

MySQL is the truth: a logout marks its `login_sessions` row, a password change, a deactivation
or an admin's revoke bumps the user's `token_generation`. Redis holds a cache of both that every
web process reads in one round trip, so the common request makes no query. The cache only ever
says what the database said: an entry that is missing (expired, flushed, a Redis restarted
without persistence) is read again from the database, so losing Redis's data makes a check
slower, never more permissive.

Writers drop the entry before their commit and write the new value after it, with a plain SET;
readers fill a missing entry with SET NX. A reader that read the old row before the commit can
therefore never overwrite the value a writer stored after it. A writer whose final SET fails
(Redis went away between its two calls) leaves a stale reader's fill possible for at most
CACHE_TTL, the bound on how long any entry lives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import redis
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from common.accounts.models import LoginSession, Role, User
from common.infra.orm import utcnow

logger = logging.getLogger(__name__)

SESSION_KEY = "auth:session:{}"
USER_KEY = "auth:user:{}"
CACHE_TTL = 300
_LIVE, _ENDED = "1", "0"


@dataclasses.dataclass(frozen=True)
class UserState:
    role: Role
    is_active: bool
    generation: int
    # The user's own spend budget (common.billing.budgets), so a reservation needs no read
    # of the user row: "" when none is set (the tier's default applies).
    budget_amount: str = ""
    budget_period: str = ""

    def encode(self) -> str:
        return (f"{self.role.value}|{int(self.is_active)}|{self.generation}|"
                f"{self.budget_amount}|{self.budget_period}")

    @classmethod
    def decode(cls, raw: str | bytes | None) -> UserState | None:
        """None for a missing entry, and for one in an older format (read again)."""
        if raw is None:
            return None
        parts = (raw.decode() if isinstance(raw, bytes) else raw).split("|")
        if len(parts) != 5:
            return None
        return cls(Role(parts[0]), parts[1] == "1", int(parts[2]), parts[3], parts[4])

    @classmethod
    def of(cls, user: User) -> UserState:
        amount = getattr(user, "budget_amount", None)
        return cls(Role(user.role), bool(user.is_active), int(user.token_generation or 0),
                   str(amount) if amount is not None else "",
                   (getattr(user, "budget_period", None) or "") if amount is not None else "")


@dataclasses.dataclass(frozen=True)
class TokenCheck:
    revoked: bool
    user: UserState | None  # None: the user no longer exists (or the token was revoked)


def _text(raw: str | bytes | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


class AuthState:
    """Reads and writes the shared session state."""

    def __init__(self, redis_client: redis.Redis, session_factory: Callable[[], Session]) -> None:
        self.redis = redis_client
        self.session_factory = session_factory

    # --- sessions ------------------------------------------------------------------------
    @staticmethod
    def open_session(session: Session, user: User, lifetime_seconds: int) -> str:
        """Record a new login session of `user` in the caller's transaction; its id. The
        user's sessions that expired go at the same time, so the table holds live ones only."""
        session_id = str(uuid.uuid4())
        now = utcnow()
        session.execute(delete(LoginSession).where(LoginSession.user_id == user.id,
                                                   LoginSession.expires_at < now))
        session.add(LoginSession(id=session_id, user_id=user.id, created_at=now,
                                 expires_at=now + dt.timedelta(seconds=lifetime_seconds)))
        return session_id

    def end_session(self, session_id: str, user_id: int) -> None:
        """Logout: the session's tokens, access and refresh, are refused from now on."""
        key = SESSION_KEY.format(session_id)
        self.redis.delete(key)  # before the commit: no process goes on reading "live"
        with self.session_factory() as session:
            session.execute(update(LoginSession)
                            .where(LoginSession.id == session_id,
                                   LoginSession.user_id == user_id,
                                   LoginSession.revoked_at.is_(None))
                            .values(revoked_at=utcnow()))
            session.commit()
        self._store_after_commit(key, _ENDED)

    # --- the per-request check -------------------------------------------------------------
    def check(self, *, session_id: str, user_id: int, generation: int) -> TokenCheck:
        """One round trip in the common case: is the session live, and the user's state?"""
        session_raw, user_raw = self.redis.mget(SESSION_KEY.format(session_id),
                                                USER_KEY.format(user_id))
        session_state, user = _text(session_raw), UserState.decode(user_raw)
        if session_state == _ENDED:
            return TokenCheck(revoked=True, user=None)
        if session_state is None or user is None:
            live, user = self._load(session_id, user_id, need_session=session_state is None,
                                    user=user)
            if not live:
                return TokenCheck(revoked=True, user=None)
        # A disabled user's tokens are refused as such ("disabled"), before the generation.
        if user is not None and user.is_active and user.generation != generation:
            return TokenCheck(revoked=True, user=None)
        return TokenCheck(revoked=False, user=user)

    def _load(self, session_id: str, user_id: int, *, need_session: bool,
              user: UserState | None) -> tuple[bool, UserState | None]:
        """Read what the cache missed from the database, and fill the cache with it (NX)."""
        live = True
        with self.session_factory() as session:
            if need_session:
                row = session.get(LoginSession, session_id)
                live = (row is not None and row.user_id == user_id and row.revoked_at is None
                        and row.expires_at > utcnow())
            if user is None:
                found = session.get(User, user_id)
                user = UserState.of(found) if found else None
        pipe = self.redis.pipeline(transaction=False)
        if need_session:
            pipe.set(SESSION_KEY.format(session_id), _LIVE if live else _ENDED,
                     ex=CACHE_TTL, nx=True)
        if user is not None:
            pipe.set(USER_KEY.format(user_id), user.encode(), ex=CACHE_TTL, nx=True)
        pipe.execute()
        return live, user

    # --- users -----------------------------------------------------------------------------
    def user(self, user_id: int) -> UserState | None:
        """The user's live state (an API key's check): the cache, else the database."""
        state = UserState.decode(self.redis.get(USER_KEY.format(user_id)))
        if state is None:
            with self.session_factory() as session:
                found = session.get(User, user_id)
                state = UserState.of(found) if found else None
            if state is not None:
                self.redis.set(USER_KEY.format(user_id), state.encode(), ex=CACHE_TTL, nx=True)
        return state

    def forget_user(self, user_id: int) -> None:
        self.redis.delete(USER_KEY.format(user_id))

    def remember_user(self, user: User) -> None:
        self._store_after_commit(USER_KEY.format(user.id), UserState.of(user).encode())

    def _store_after_commit(self, key: str, value: str) -> None:
        # The commit is done, so this is only the cache: a failure here must not turn the
        # committed change into an error. The entry was dropped before the commit, so the next
        # reader fills it from the database (see the module docstring for the bound).
        try:
            self.redis.set(key, value, ex=CACHE_TTL)
        except redis.RedisError as exc:
            logger.warning("auth cache write failed after commit (%s); readers refill it "
                           "from the database", exc)
