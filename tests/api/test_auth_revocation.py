"""Revocations the database remembers: Redis only caches them, so losing its data can make a
check slower, never more permissive (common.accounts.session_state)."""

from __future__ import annotations

import contextlib

import pytest
import redis as redis_lib
from sqlalchemy import event


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _flush(redis_url: str) -> None:
    """What a Redis restart without persistence leaves: nothing."""
    redis_lib.Redis.from_url(redis_url).flushall()


def _me(client, token: str) -> int:
    return client.get("/api/auth/me", headers=_bearer(token)).status_code


def _refresh(client, token: str) -> int:
    return client.post("/api/auth/refresh", headers=_bearer(token)).status_code


def test_logged_out_tokens_stay_401_after_the_auth_cache_is_flushed(client, accounts,
                                                                    redis_url):
    tokens = accounts.login(accounts.create())
    assert _me(client, tokens["access_token"]) == 200
    assert client.post("/api/auth/logout",
                       headers=_bearer(tokens["access_token"])).status_code == 200

    _flush(redis_url)

    assert _me(client, tokens["access_token"]) == 401
    assert _refresh(client, tokens["refresh_token"]) == 401
    # Flushed again after the refill: the answer comes from the database each time.
    _flush(redis_url)
    assert _refresh(client, tokens["refresh_token"]) == 401


def test_a_live_session_still_works_after_the_flush(client, accounts, redis_url):
    tokens = accounts.login(accounts.create())
    _flush(redis_url)
    assert _me(client, tokens["access_token"]) == 200
    assert _refresh(client, tokens["refresh_token"]) == 200


def test_a_reactivated_users_old_tokens_stay_401(client, accounts, redis_url):
    _, admin_headers = accounts.headers("admin")
    account = accounts.create()
    tokens = accounts.login(account)
    url = f"/api/admin/users/{account['id']}"
    assert client.patch(url, json={"active": False}, headers=admin_headers).status_code == 200
    assert client.patch(url, json={"active": True}, headers=admin_headers).status_code == 200

    for _ in range(2):  # from the cache, then from the database
        assert _me(client, tokens["access_token"]) == 401
        assert _refresh(client, tokens["refresh_token"]) == 401
        _flush(redis_url)
    assert _me(client, accounts.login(account)["access_token"]) == 200  # a new login works


def test_a_password_change_ends_every_other_session(client, accounts, redis_url):
    account = accounts.create()
    this_device, other_device = accounts.login(account), accounts.login(account)
    response = client.post("/api/auth/password", headers=_bearer(this_device["access_token"]),
                           json={"current_password": account["password"],
                                 "new_password": "a-brand-new-passphrase"})
    assert response.status_code == 200, response.json
    fresh = response.json["data"]

    _flush(redis_url)
    for old in (this_device, other_device):
        assert _me(client, old["access_token"]) == 401
        assert _refresh(client, old["refresh_token"]) == 401
    assert _me(client, fresh["access_token"]) == 200
    assert _refresh(client, fresh["refresh_token"]) == 200
    assert client.post("/api/auth/login", json={
        "username": account["username"], "password": account["password"]}).status_code == 401
    accounts.login({**account, "password": "a-brand-new-passphrase"})


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"current_password": "not-the-password", "new_password": "a-brand-new-passphrase"},
     403, None),
    ({"current_password": "correct-horse-battery", "new_password": "short"}, 400,
     "new_password"),
    ({"current_password": "correct-horse-battery", "new_password": "iloveyou1"}, 400,
     "new_password"),
    ({"current_password": "correct-horse-battery"}, 400, "new_password"),
])
def test_a_refused_password_change_changes_nothing(client, accounts, body, status, field):
    account = accounts.create()
    tokens = accounts.login(account)
    response = client.post("/api/auth/password", headers=_bearer(tokens["access_token"]),
                           json=body)
    assert response.status_code == status, response.json
    if field:
        assert [e["field"] for e in response.json["errors"]] == [field]
    assert _me(client, tokens["access_token"]) == 200


def test_an_admin_revokes_every_session_of_a_user(client, accounts, redis_url):
    _, admin_headers = accounts.headers("admin")
    account = accounts.create()
    first, second = accounts.login(account), accounts.login(account)
    response = client.post(f"/api/admin/users/{account['id']}/revoke-sessions",
                           headers=admin_headers)
    assert response.status_code == 200, response.json
    for _ in range(2):
        for tokens in (first, second):
            assert _me(client, tokens["access_token"]) == 401
            assert _refresh(client, tokens["refresh_token"]) == 401
        _flush(redis_url)
    assert _me(client, accounts.login(account)["access_token"]) == 200

    missing = client.post("/api/admin/users/987654321/revoke-sessions", headers=admin_headers)
    assert (missing.status_code, missing.json["code"]) == (404, 404)
    _, user_headers = accounts.headers()
    assert client.post(f"/api/admin/users/{account['id']}/revoke-sessions",
                       headers=user_headers).status_code == 403


def test_the_cli_revokes_sessions_and_a_new_password_ends_them_too(app, client, accounts):
    runner = app.test_cli_runner()
    account = accounts.create()
    tokens = accounts.login(account)
    result = runner.invoke(args=["users", "revoke-sessions", "--username", account["username"]])
    assert result.exit_code == 0, result.output
    assert _me(client, tokens["access_token"]) == 401

    tokens = accounts.login(account)
    result = runner.invoke(args=["users", "set-password", "--username", account["username"]],
                           input="another-long-passphrase\nanother-long-passphrase\n")
    assert result.exit_code == 0, result.output
    assert _me(client, tokens["access_token"]) == 401
    unknown = runner.invoke(args=["users", "revoke-sessions", "--username", "nobody_here"])
    assert unknown.exit_code != 0 and "no user named" in unknown.output


@contextlib.contextmanager
def _counting_statements(database):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def test_a_warm_cache_serves_the_check_without_a_query(app, client, accounts, redis_url):
    from web.context import services

    tokens = accounts.login(accounts.create())
    with app.app_context():
        database = services().database
    assert _me(client, tokens["access_token"]) == 200  # fills the cache
    with _counting_statements(database) as statements:
        assert _me(client, tokens["access_token"]) == 200
    assert len(statements) == 1, statements  # /me's own read of the user, nothing for auth

    _flush(redis_url)
    with _counting_statements(database) as statements:
        assert _me(client, tokens["access_token"]) == 200
    assert len(statements) == 3, statements  # the session row and the user, then /me's read


def test_a_login_removes_the_users_expired_sessions(accounts, database):
    import datetime as dt

    from sqlalchemy import select

    from common.accounts.models import LoginSession
    from common.infra.orm import utcnow

    account = accounts.create()
    with database.session() as session:
        session.add(LoginSession(id="expired-" + account["username"][-12:],
                                 user_id=account["id"], created_at=utcnow(),
                                 expires_at=utcnow() - dt.timedelta(seconds=1)))
    accounts.login(account)
    with database.session() as session:
        rows = session.scalars(select(LoginSession).where(
            LoginSession.user_id == account["id"])).all()
        assert len(rows) == 1 and rows[0].expires_at > utcnow()
