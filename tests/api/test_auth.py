"""The auth contract: login, refresh, logout, /me, and every way a token must be refused."""

from __future__ import annotations

import json
import time

import jwt as pyjwt
import pytest

from common.accounts.models import Role


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_login_success_has_the_documented_shape(client, accounts, settings):
    account = accounts.create()
    response = client.post("/api/auth/login", json={"username": account["username"],
                                                    "password": account["password"]})
    assert response.status_code == 200
    body = response.json
    assert (body["code"], body["message"]) == (200, "Login successful")
    data = body["data"]
    assert {"access_token", "refresh_token", "expires_in", "user"} <= set(data)
    assert data["expires_in"] == settings.jwt_access_token_expires == 3600
    assert data["user"] == {"id": account["id"], "username": account["username"],
                            "email": f"{account['username']}@example.com"}
    assert response.headers["X-Request-ID"] == body["request_id"]


def test_unknown_user_and_wrong_password_get_the_same_401(client, accounts):
    account = accounts.create()
    wrong = client.post("/api/auth/login", json={"username": account["username"],
                                                 "password": "not-the-password"})
    unknown = client.post("/api/auth/login", json={"username": "nobody-" + account["username"],
                                                   "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json["message"] == unknown.json["message"] == "Invalid username or password"
    assert wrong.json["data"] is None


def test_disabled_user_cannot_log_in(client, accounts):
    account = accounts.create(active=False)
    response = client.post("/api/auth/login", json={"username": account["username"],
                                                    "password": account["password"]})
    assert response.status_code == 401


@pytest.mark.parametrize("body, fields", [
    ({}, {"username", "password"}),
    ({"username": "a"}, {"password"}),
    ({"username": 5, "password": ["x"]}, {"username", "password"}),
    ({"username": "a", "password": "b", "admin": True}, {"admin"}),
])
def test_login_validation_errors_name_each_field(client, body, fields):
    response = client.post("/api/auth/login", json=body)
    assert response.status_code == 400
    assert {e["field"] for e in response.json["errors"]} == fields


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "", "null"])
def test_login_malformed_json_is_a_400(client, raw):
    response = client.post("/api/auth/login", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json["errors"][0]["field"] == "body"


def test_me_returns_the_user_with_role(client, accounts):
    account, headers = accounts.headers("premium")
    response = client.get("/api/auth/me", headers=headers)
    assert response.status_code == 200
    assert response.json["data"]["role"] == "premium"
    assert response.json["data"]["username"] == account["username"]


def test_refresh_issues_a_working_access_token(client, accounts):
    tokens = accounts.login(accounts.create())
    response = client.post("/api/auth/refresh", headers=_bearer(tokens["refresh_token"]))
    assert response.status_code == 200
    new_access = response.json["data"]["access_token"]
    assert client.get("/api/auth/me", headers=_bearer(new_access)).status_code == 200


def test_access_token_cannot_refresh(client, accounts):
    tokens = accounts.login(accounts.create())
    assert client.post("/api/auth/refresh",
                       headers=_bearer(tokens["access_token"])).status_code == 401


def test_logout_revokes_access_and_refresh_in_every_instance(app, settings, client, accounts):
    from web.app import create_app

    other_instance = create_app(settings).test_client()  # shares only Redis and MySQL
    tokens = accounts.login(accounts.create())
    assert other_instance.get("/api/auth/me",
                              headers=_bearer(tokens["access_token"])).status_code == 200

    assert client.post("/api/auth/logout",
                       headers=_bearer(tokens["access_token"])).status_code == 200

    for instance in (client, other_instance):
        me = instance.get("/api/auth/me", headers=_bearer(tokens["access_token"]))
        assert me.status_code == 401
        assert me.json["message"] == "Token has been revoked"
        refresh = instance.post("/api/auth/refresh", headers=_bearer(tokens["refresh_token"]))
        assert refresh.status_code == 401


def test_logout_with_the_refresh_token_ends_the_session_too(client, accounts):
    tokens = accounts.login(accounts.create())
    assert client.post("/api/auth/logout",
                       headers=_bearer(tokens["refresh_token"])).status_code == 200
    assert client.get("/api/auth/me",
                      headers=_bearer(tokens["access_token"])).status_code == 401


def _forge(settings, **changes) -> str:
    now = int(time.time())
    payload = {"sub": "1", "jti": "forged", "type": "access", "fresh": False, "iat": now,
               "nbf": now, "exp": now + 600, "role": "admin"}
    payload.update(changes.pop("payload", {}))
    key = changes.pop("key", settings.jwt_secret_key.get_secret_value())
    algorithm = changes.pop("algorithm", "HS256")
    return pyjwt.encode(payload, key, algorithm=algorithm)


def _none_alg_token(settings) -> str:
    token = _forge(settings)
    _header, payload, _ = token.split(".")
    none_header = pyjwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    return f"{none_header}.{payload}."


@pytest.mark.parametrize("make_token", [
    pytest.param(lambda s: _forge(s, payload={"exp": int(time.time()) - 10}), id="expired"),
    pytest.param(lambda s: _forge(s, key="another-key-that-is-at-least-32-bytes!!"),
                 id="wrong-key"),
    pytest.param(lambda s: _forge(s)[:-4] + "AAAA", id="tampered-signature"),
    pytest.param(_none_alg_token, id="alg-none"),
    pytest.param(lambda s: "not.a.jwt", id="garbage"),
    pytest.param(lambda s: _forge(s, payload={"sub": 1}), id="integer-subject"),
])
def test_forged_tokens_are_401_not_422(client, settings, make_token):
    response = client.get("/api/auth/me", headers=_bearer(make_token(settings)))
    assert response.status_code == 401
    assert response.json["code"] == 401


def test_an_expired_token_says_so(client, settings):
    expired = _forge(settings, payload={"exp": int(time.time()) - 10})
    response = client.get("/api/auth/me", headers=_bearer(expired))
    assert (response.status_code, response.json["message"]) == (401, "Token has expired")


def test_tampered_payload_is_401(client, accounts):
    token = accounts.login(accounts.create())["access_token"]
    header, _payload, signature = token.split(".")
    claims = pyjwt.decode(token, options={"verify_signature": False})
    claims["role"] = "admin"
    forged_payload = pyjwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    response = client.get("/api/admin/users",
                          headers=_bearer(f"{header}.{forged_payload}.{signature}"))
    assert response.status_code == 401


def test_refresh_token_used_as_access_is_401(client, accounts):
    tokens = accounts.login(accounts.create())
    response = client.get("/api/auth/me", headers=_bearer(tokens["refresh_token"]))
    assert response.status_code == 401


def test_missing_and_malformed_authorization_are_401(client):
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/me", headers={"Authorization": "Token abc"}).status_code == 401


def test_role_change_and_deactivation_apply_on_the_next_request(client, accounts, settings):
    from web.app import create_app

    other_instance = create_app(settings).test_client()
    _, admin_headers = accounts.headers("admin")
    account = accounts.create()
    token = accounts.login(account)["access_token"]
    assert other_instance.get("/api/auth/me", headers=_bearer(token)).json["data"]["role"] == \
        "default"

    promote = client.patch(f"/api/admin/users/{account['id']}", json={"role": "premium"},
                           headers=admin_headers)
    assert promote.status_code == 200
    for instance in (client, other_instance):
        assert instance.get("/api/auth/me",
                            headers=_bearer(token)).json["data"]["role"] == "premium"

    deactivate = client.patch(f"/api/admin/users/{account['id']}", json={"active": False},
                              headers=admin_headers)
    assert deactivate.status_code == 200
    for instance in (client, other_instance):
        response = instance.get("/api/auth/me", headers=_bearer(token))
        assert response.status_code == 401
        assert "disabled" in response.json["message"]


def test_repeated_failed_logins_are_throttled(client, accounts, settings):
    account = accounts.create()
    limit = int(settings.login_failure_limit.split()[0])
    for _ in range(limit):
        assert client.post("/api/auth/login", json={"username": account["username"],
                                                    "password": "wrong-password"}
                           ).status_code == 401
    blocked = client.post("/api/auth/login", json={"username": account["username"],
                                                   "password": account["password"]})
    assert blocked.status_code == 429
    assert blocked.json["code"] == 429
    assert int(blocked.headers["Retry-After"]) > 0
    # Another username from the same client is not affected.
    other = accounts.create()
    assert client.post("/api/auth/login", json={"username": other["username"],
                                                "password": other["password"]}
                       ).status_code == 200


def test_access_token_lifetime_follows_settings(settings, database):
    from tests.conftest import Accounts
    from web.app import create_app

    short = settings.model_copy(update={"jwt_access_token_expires": 120})
    accounts = Accounts(database, create_app(short).test_client())
    data = accounts.login(accounts.create())
    assert data["expires_in"] == 120
    claims = pyjwt.decode(data["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


def test_roles_are_the_three_documented_ones():
    assert [r.value for r in Role] == ["default", "premium", "admin"]


def test_passwords_use_owasp_argon2id_and_older_hashes_are_upgraded_at_login(
        client, accounts, database):
    from argon2 import PasswordHasher

    from common.accounts.models import User

    owasp = "$argon2id$v=19$m=19456,t=2,p=1$"
    account = accounts.create()
    with database.session() as session:
        user = session.get(User, account["id"])
        assert user.password_hash.startswith(owasp)
        user.password_hash = PasswordHasher().hash(account["password"])  # the 64 MiB default
    response = client.post("/api/auth/login", json={"username": account["username"],
                                                    "password": account["password"]})
    assert response.status_code == 200
    with database.session() as session:
        assert session.get(User, account["id"]).password_hash.startswith(owasp)
