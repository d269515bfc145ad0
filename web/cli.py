"""Operator commands: `flask --app web.wsgi users create|set-password|revoke-sessions|list`."""

from __future__ import annotations

import logging

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError, ProgrammingError

from common.accounts import users
from common.accounts.models import Role
from common.errors import AppError, ValidationFailed
from common.infra.db import Database
from common.infra.settings import Settings
from web.context import services

logger = logging.getLogger(__name__)
users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.option("--username", required=True)
@click.option("--email", default=None)
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.DEFAULT.value)
@click.password_option("--password", envvar="NEW_USER_PASSWORD")
def create_user(username: str, email: str | None, role: str, password: str) -> None:
    """Create a user (password prompted, or from NEW_USER_PASSWORD)."""
    with services().database.session() as session:
        try:
            user = users.create_user(session=session, username=username, password=password,
                                     email=email, role=Role(role))
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"created user id={user.id} username={user.username} role={user.role.value}")


@users_cli.command("set-password")
@click.option("--username", required=True)
@click.password_option("--password", envvar="NEW_USER_PASSWORD")
def set_password(username: str, password: str) -> None:
    """Replace a user's password (ends every session of the user)."""
    with services().database.session() as session:
        try:
            users.set_password(session=session, auth_state=services().auth_state,
                               user=_user_named(session, username), password=password)
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"password changed for {username}; their sessions were ended")


@users_cli.command("revoke-sessions")
@click.option("--username", required=True)
def revoke_sessions(username: str) -> None:
    """End every session of a user: all their tokens are refused from the next request."""
    with services().database.session() as session:
        try:
            users.revoke_sessions(session=session, auth_state=services().auth_state,
                                  user_id=_user_named(session, username).id)
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"sessions of {username} ended")


def _user_named(session, username: str):
    user = users.get_by_username(session=session, username=username)
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    return user


@users_cli.command("list")
def list_users() -> None:
    """List users with their role and state."""
    with services().database.session() as session:
        for user in users.list_users(session=session):
            state = "active" if user.is_active else "disabled"
            click.echo(f"{user.id}\t{user.username}\t{user.role.value}\t{state}")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)


def bootstrap_admin_if_configured(settings: Settings, database: Database) -> None:
    """Create ADMIN_USERNAME on start-up when configured; a missing schema is not fatal here."""
    if not (settings.admin_username and settings.admin_password):
        return
    try:
        with database.session() as session:
            users.bootstrap_admin(session=session, username=settings.admin_username,
                                  password=settings.admin_password.get_secret_value(),
                                  email=settings.admin_email)
    except ValidationFailed as exc:
        # Production settings refuse a weak ADMIN_PASSWORD earlier; this is the same rule for
        # development, where the settings accept any value.
        raise RuntimeError(f"ADMIN_PASSWORD refused: {exc.errors[0]['message']}") from exc
    except (OperationalError, ProgrammingError) as exc:
        # Readiness reports the database; the next start (or `flask users create`) retries.
        logger.warning("bootstrap_admin skipped: database not ready: %s", exc.orig)
