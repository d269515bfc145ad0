"""User administration is for admins only, validates its input, and bootstraps the admin."""

from __future__ import annotations

import logging
import uuid

import pytest
from pydantic import SecretStr

from common.accounts import users
from common.accounts.models import Role


def test_admin_creates_lists_and_updates_users(client, accounts):
    _, headers = accounts.headers("admin")
    created = client.post("/api/admin/users", headers=headers, json={
        "username": f"made_by_admin_{uuid.uuid4().hex[:8]}",
        "password": "long-enough-password", "email": "a@example.com", "role": "premium"})
    assert created.status_code == 201, created.json
    user = created.json["data"]
    assert user["role"] == "premium" and user["active"] is True
    assert "password" not in user and "password_hash" not in user

    listing = client.get("/api/admin/users", headers=headers)
    assert user["id"] in {u["id"] for u in listing.json["data"]}

    updated = client.patch(f"/api/admin/users/{user['id']}", headers=headers,
                           json={"role": "default", "active": False})
    assert updated.json["data"]["role"] == "default"
    assert updated.json["data"]["active"] is False


def test_duplicate_username_is_409(client, accounts):
    _, headers = accounts.headers("admin")
    existing = accounts.create()
    response = client.post("/api/admin/users", headers=headers, json={
        "username": existing["username"], "password": "long-enough-password"})
    assert response.status_code == 409


@pytest.mark.parametrize("body, field", [
    ({"username": "ok_name", "password": "short"}, "password"),
    ({"username": "x", "password": "long-enough-password"}, "username"),
    ({"username": "ok_name", "password": "long-enough-password", "role": "root"}, "role"),
    ({"username": "ok_name", "password": "long-enough-password", "email": "no-at"}, "email"),
    ({"username": "ok_name", "password": "long-enough-password", "is_active": 1}, "is_active"),
])
def test_create_user_validation(client, accounts, body, field):
    _, headers = accounts.headers("admin")
    response = client.post("/api/admin/users", headers=headers, json=body)
    assert response.status_code == 400
    assert field in {e["field"] for e in response.json["errors"]}


def test_update_unknown_user_is_404_and_bad_fields_are_400(client, accounts):
    _, headers = accounts.headers("admin")
    assert client.patch("/api/admin/users/999999999", headers=headers,
                        json={"role": "premium"}).status_code == 404
    account = accounts.create()
    bad = client.patch(f"/api/admin/users/{account['id']}", headers=headers,
                       json={"active": "yes"})
    assert bad.status_code == 400


def test_admin_cannot_lock_themselves_out(client, accounts):
    admin, headers = accounts.headers("admin")
    response = client.patch(f"/api/admin/users/{admin['id']}", headers=headers,
                            json={"role": "default"})
    assert response.status_code == 409


@pytest.mark.parametrize("role", ["default", "premium"])
def test_non_admins_get_403_on_every_admin_route(client, accounts, app, role):
    _, headers = accounts.headers(role)
    admin_rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/admin")]
    assert admin_rules
    for rule in admin_rules:
        url = rule.rule.replace("<int:user_id>", "1")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url, method=method, headers=headers, json={})
            assert response.status_code == 403, (method, url)


def test_bootstrap_admin_is_idempotent_and_never_overwrites(database, caplog):
    name = "boot_admin_test"
    with database.session() as session:
        first = users.bootstrap_admin(session=session, username=name, password="first-password")
    with database.session() as session, caplog.at_level(logging.WARNING):
        again = users.bootstrap_admin(session=session, username=name, password="other-password")
    assert again.id == first.id and again.role == Role.ADMIN
    assert "stored password was kept" in caplog.text
    with database.session() as session:
        assert users.authenticate(session=session, username=name, password="first-password")
        assert users.authenticate(session=session, username=name,
                                  password="other-password") is None


def test_app_start_bootstraps_the_configured_admin(settings, client):
    from web.app import create_app

    configured = settings.model_copy(update={
        "admin_username": "configured_admin", "admin_password": SecretStr("configured-password")})
    app = create_app(configured)
    response = app.test_client().post("/api/auth/login", json={
        "username": "configured_admin", "password": "configured-password"})
    assert response.status_code == 200


def test_cli_creates_users(app, database):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--username", "cli_made_user",
                                 "--role", "premium"], input="cli-password-1\ncli-password-1\n")
    assert result.exit_code == 0, result.output
    with database.session() as session:
        user = users.get_by_username(session=session, username="cli_made_user")
        assert user.role == Role.PREMIUM
    duplicate = runner.invoke(args=["users", "create", "--username", "cli_made_user"],
                              input="cli-password-1\ncli-password-1\n")
    assert duplicate.exit_code != 0 and "already taken" in duplicate.output
