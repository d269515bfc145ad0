"""Operator commands: `flask --app web.wsgi users create|set-password|revoke-sessions|list`
and `users keys create|list|revoke`."""

from __future__ import annotations

import logging
from decimal import Decimal

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError, ProgrammingError

from common.accounts import users
from common.accounts.models import Role
from common.errors import AppError, ValidationFailed
from common.infra.db import Database
from common.infra.settings import BudgetSpec, Settings
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


keys_cli = AppGroup("keys", help="Manage API keys (a program's own revocable credential).")
users_cli.add_command(keys_cli)


@keys_cli.command("create")
@click.option("--username", required=True)
@click.option("--name", required=True)
@click.option("--model", "models", multiple=True, help="Allowed model (repeat; default all)")
@click.option("--rpm-limit", type=click.IntRange(min=1), default=None)
@click.option("--tpm-limit", type=click.IntRange(min=1), default=None)
@click.option("--budget", default=None, help="Spend budget, e.g. 10/day or 200/month")
def create_key(username: str, name: str, models: tuple[str, ...], rpm_limit: int | None,
               tpm_limit: int | None, budget: str | None) -> None:
    """Create a key for a user and print its secret (shown this once)."""
    spec = None
    if budget:
        amount, _, period = budget.partition("/")
        try:
            spec = BudgetSpec(amount=Decimal(amount), period=period)
        except (ValueError, ArithmeticError) as exc:
            raise click.ClickException(
                f"--budget: expected AMOUNT/day or AMOUNT/month ({exc})") from exc
    with services().database.session() as session:
        user = _user_named(session, username)
        try:
            key, secret = services().api_keys.create(
                session, user_id=user.id, name=name, models=list(models) or None,
                rpm_limit=rpm_limit, tpm_limit=tpm_limit, budget=spec)
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(f"created key id={key.id} for {username}; store it now, it is not shown "
                   f"again:\n{secret}")


@keys_cli.command("list")
@click.option("--username", default=None, help="Only this user's keys")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys")
def list_keys(username: str | None, include_revoked: bool) -> None:
    """List keys: id, user, name, prefix...last four, state (never the secret)."""
    with services().database.session() as session:
        user_id = _user_named(session, username).id if username else None
        for key in services().api_keys.list(session, user_id=user_id,
                                            include_revoked=include_revoked):
            state = "revoked" if key.revoked_at else "live"
            click.echo(f"{key.id}\t{key.user_id}\t{key.name}\t{key.prefix}...{key.last_four}"
                       f"\t{state}")


@keys_cli.command("revoke")
@click.option("--id", "key_id", type=int, required=True)
def revoke_key(key_id: int) -> None:
    """Revoke a key: every process refuses it from its next request."""
    with services().database.session() as session:
        try:
            services().api_keys.revoke(session, services().api_keys.get(session, key_id,
                                                                         user_id=None))
        except AppError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"key {key_id} revoked")


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
