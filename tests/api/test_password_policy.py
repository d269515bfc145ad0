"""User passwords follow NIST SP 800-63B: length, not composition; at least 8 characters (12
for admins), at most 256; none from the bundled list of common and breached passwords. Every
way a password is set answers the same rule: the admin API, the password change, the CLI and
the admin bootstrap."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr


def _name() -> str:
    return f"pw_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(("role", "password", "rule"), [
    ("default", "short12", "at least 8 characters"),
    ("default", "password", "common or breached"),
    ("default", "12345678", "common or breached"),
    ("default", "PassWord123", "common or breached"),  # case does not make it less common
    ("premium", "x" * 257, "at most 256"),
    ("admin", "Tr0ub4dor&3", "at least 12 characters"),
    ("admin", "qwertyuiop12", "common or breached"),
])
def test_admin_api_refuses_weak_passwords_with_a_400_naming_the_rule(client, accounts, role,
                                                                   password, rule):
    _, admin = accounts.headers("admin")
    response = client.post("/api/admin/users", headers=admin, json={
        "username": _name(), "password": password, "role": role})
    assert response.status_code == 400, response.json
    assert response.json["errors"][0]["field"] == "password"
    assert rule in response.json["errors"][0]["message"]


@pytest.mark.parametrize(("role", "password"), [
    ("default", "8chars!x"), ("admin", "twelve-chars"), ("premium", "p" * 256)])
def test_admin_api_accepts_passwords_at_the_bounds(client, accounts, role, password):
    _, admin = accounts.headers("admin")
    name = _name()
    response = client.post("/api/admin/users", headers=admin, json={
        "username": name, "password": password, "role": role})
    assert response.status_code == 201, response.json
    assert client.post("/api/auth/login", json={"username": name, "password": password}
                       ).status_code == 200


def test_an_admin_changing_their_password_needs_twelve_characters(client, accounts):
    account = accounts.create("admin", password="an-admin-passphrase")
    token = accounts.login(account)["access_token"]
    response = client.post("/api/auth/password", headers={"Authorization": f"Bearer {token}"},
                           json={"current_password": account["password"],
                                 "new_password": "only-11-chr"})
    assert response.status_code == 400
    assert "at least 12 characters" in response.json["errors"][0]["message"]


def test_the_cli_refuses_a_common_password(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--username", _name()],
                           input="iloveyou1\niloveyou1\n")
    assert result.exit_code != 0
    assert "common or breached" in result.output
    result = runner.invoke(args=["users", "create", "--username", _name(), "--role", "admin"],
                           input="eleven-char\neleven-char\n")
    assert result.exit_code != 0 and "at least 12 characters" in result.output


def test_the_admin_bootstrap_refuses_a_weak_password_even_in_development(settings):
    from web.app import create_app

    weak = settings.model_copy(update={"app_env": "development", "admin_username": _name(),
                                       "admin_password": SecretStr("a")})
    with pytest.raises(RuntimeError, match="ADMIN_PASSWORD refused: an admin's password needs "
                                           "at least 12 characters"):
        create_app(weak)
