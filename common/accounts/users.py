"""The user service: creating, authenticating and changing users."""

from __future__ import annotations

import logging
import unicodedata

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.accounts.models import Role, User
from common.accounts.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from common.accounts.session_state import AuthState
from common.errors import Conflict, NotFound, ValidationFailed

logger = logging.getLogger(__name__)


def get_by_username(*, session: Session, username: str) -> User | None:
    """The user the database matches to `username`. MariaDB's collation ignores case, accents
    and trailing spaces, so `Bob`, `BOB`, `bob ` and `bób` all find `bob`."""
    return session.scalar(select(User).where(User.username == username))


def account_id(*, session: Session, username: str) -> int | None:
    """The id of the user a login naming `username` would log in as (see get_by_username)."""
    return session.scalar(select(User.id).where(User.username == username))


def canonical_username(username: str) -> str:
    """A spelling-independent form of a name no user matches, close to what the database's
    collation compares: compatibility-decomposed, combining marks dropped, case-folded,
    trailing spaces removed (MariaDB's PAD SPACE)."""
    decomposed = unicodedata.normalize("NFKD", username)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.casefold().rstrip(" ")[:64]


def check_password(password: str, *, role: Role, field: str = "password") -> None:
    """The password policy (common.accounts.passwords) as a 400 naming the field and the rule."""
    problem = password_problem(password, admin=role == Role.ADMIN)
    if problem:
        raise ValidationFailed(f"Password refused: {problem}", code="weak_password",
                               errors=[{"field": field, "message": problem}])


def create_user(*, session: Session, username: str, password: str, email: str | None = None,
                role: Role = Role.DEFAULT) -> User:
    """Insert a user and flush; raises Conflict when the username is taken and
    ValidationFailed when the password breaks the policy."""
    check_password(password, role=role)
    user = User(username=username, email=email, password_hash=hash_password(password),
                role=role, is_active=True)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"Username '{username}' is already taken", code="username_taken") from exc
    return user


def authenticate(*, session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None; unknown names cost the same time."""
    user = get_by_username(session=session, username=username)
    if not verify_password(user.password_hash if user else None, password):
        return None
    if not user.is_active:
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def change_user(*, session: Session, auth_state: AuthState, user_id: int, actor_id: int,
                role: Role | None = None, is_active: bool | None = None) -> User:
    """Change a user's role or active flag and make every process see it on its next request.

    This function owns its commit (see `_commit_user_state`).
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    if user_id == actor_id and (role not in (None, Role.ADMIN) or is_active is False):
        raise Conflict("Admins cannot demote or disable themselves", code="self_lockout")
    if role is not None:
        user.role = role
    if is_active is False and user.is_active:
        # A deactivation ends every session for good: re-activating must not revive them.
        user.token_generation += 1
    if is_active is not None:
        user.is_active = is_active
    _commit_user_state(session, auth_state, user)
    return user


def set_budget(*, session: Session, user_id: int, budget) -> None:
    """Set (or, with None, clear back to the tier's default) the user's spend budget; the
    caller commits (common.billing.budgets reads it at each reservation)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    user.budget_amount = budget.amount if budget is not None else None
    user.budget_period = budget.period if budget is not None else None


def revoke_sessions(*, session: Session, auth_state: AuthState, user_id: int) -> User:
    """End every session of the user: all their tokens are refused from the next request."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    user.token_generation += 1
    _commit_user_state(session, auth_state, user)
    return user


def _commit_user_state(session: Session, auth_state: AuthState, user: User) -> None:
    """Commit a change to what the per-request check reads and make every process see it.

    The shared copy in Redis is dropped before the commit (so no process keeps the old state)
    and rewritten after it (readers that miss refill it from the committed row)."""
    auth_state.forget_user(user.id)
    session.commit()
    auth_state.remember_user(user)


def bootstrap_admin(*, session: Session, username: str, password: str,
                    email: str | None = None) -> User:
    """Create the configured admin once; never silently overwrite an existing account."""
    existing = get_by_username(session=session, username=username)
    if existing is not None:
        if existing.role != Role.ADMIN:
            logger.warning("bootstrap_admin user=%s exists without the admin role; "
                           "left unchanged", username)
        elif not verify_password(existing.password_hash, password):
            logger.warning("bootstrap_admin user=%s exists and ADMIN_PASSWORD differs from the "
                           "stored password; the stored password was kept "
                           "(change it with `flask users set-password`)", username)
        return existing
    try:
        user = create_user(session=session, username=username, password=password, email=email,
                           role=Role.ADMIN)
        session.commit()
    except Conflict:
        # Another process bootstrapped it at the same moment.
        return get_by_username(session=session, username=username)
    logger.info("bootstrap_admin user=%s created", username)
    return user


def set_password(*, session: Session, auth_state: AuthState, user: User, password: str,
                 field: str = "password") -> User:
    """Replace the password and end every session of the user (commits)."""
    check_password(password, role=Role(user.role), field=field)
    user.password_hash = hash_password(password)
    user.token_generation += 1
    _commit_user_state(session, auth_state, user)
    return user
