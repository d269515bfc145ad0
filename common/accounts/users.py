"""The user service: creating, authenticating and changing users."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.accounts.models import Role, User
from common.accounts.passwords import hash_password, needs_rehash, verify_password
from common.accounts.session_state import AuthState
from common.errors import Conflict, NotFound

logger = logging.getLogger(__name__)


def get_by_username(*, session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(*, session: Session, username: str, password: str, email: str | None = None,
                role: Role = Role.DEFAULT) -> User:
    """Insert a user and flush; raises Conflict when the username is taken."""
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

    This function owns its commit because the shared copy in Redis must be dropped before the
    commit (so no process keeps the old state) and rewritten after it (so readers refill it
    from the committed row).
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    if user_id == actor_id and (role not in (None, Role.ADMIN) or is_active is False):
        raise Conflict("Admins cannot demote or disable themselves", code="self_lockout")
    if role is not None:
        user.role = role
    if is_active is not None:
        user.is_active = is_active
    auth_state.forget_user(user_id)
    session.commit()
    auth_state.remember_user(user)
    return user


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


def set_password(*, session: Session, username: str, password: str) -> User:
    user = get_by_username(session=session, username=username)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    user.password_hash = hash_password(password)
    return user
