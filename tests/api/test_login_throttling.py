"""Login throttling keyed on the account, not on the spelling of its name, and a per-account
limit across client addresses that a stranger cannot turn against the owner."""

from __future__ import annotations

import uuid

import pytest


def _address() -> str:
    octets = uuid.uuid4().bytes[:3]
    return f"10.{octets[0]}.{octets[1]}.{max(octets[2], 1)}"


def _login(client, username: str, password: str, address: str) -> int:
    return client.post("/api/auth/login", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address}).status_code


@pytest.fixture
def bob(accounts) -> dict:
    """A user whose name has an `o` to put an accent on."""
    from common.accounts import users

    username = f"bob_{uuid.uuid4().hex[:10]}"
    with accounts.database.session() as session:
        user = users.create_user(session=session, username=username,
                                 password="correct-horse-battery")
    return {"id": user.id, "username": username, "password": "correct-horse-battery"}


@pytest.mark.parametrize("spell", [
    pytest.param(lambda name: name.replace("bob", "bób", 1), id="accent"),
    pytest.param(str.upper, id="upper-case"),
    pytest.param(lambda name: name + " ", id="trailing-space"),
    pytest.param(lambda name: name.replace("bob", "BÓB", 1), id="upper-accent"),
])
def test_a_look_alike_name_after_the_lockout_is_429(client, settings, bob, spell):
    address = _address()
    limit = int(settings.login_failure_limit.split()[0])
    for _ in range(limit):
        assert _login(client, bob["username"], "wrong-password", address) == 401
    assert _login(client, bob["username"], bob["password"], address) == 429
    response = client.post("/api/auth/login", environ_base={"REMOTE_ADDR": address}, json={
        "username": spell(bob["username"]), "password": bob["password"]})
    assert response.status_code == 429, response.json
    assert int(response.headers["Retry-After"]) > 0


def test_failures_under_look_alike_names_add_up(client, settings, bob):
    address = _address()
    limit = int(settings.login_failure_limit.split()[0])
    spellings = [bob["username"], bob["username"].upper(),
                 bob["username"].replace("bob", "bób", 1), bob["username"] + " "]
    for i in range(limit):
        assert _login(client, spellings[i % len(spellings)], "wrong-password", address) == 401
    assert _login(client, bob["username"], bob["password"], address) == 429


def test_unknown_names_are_keyed_by_their_canonical_spelling(client, settings):
    from common.accounts.users import canonical_username

    address = _address()
    name = f"nobody_{uuid.uuid4().hex[:8]}"
    limit = int(settings.login_failure_limit.split()[0])
    for _ in range(limit):
        assert _login(client, name, "wrong-password", address) == 401
    assert _login(client, name.upper().replace("O", "Ó") + "  ", "wrong-password",
                  address) == 429
    assert canonical_username("BÓB\u0301 ") == canonical_username("bob") == "bob"
    assert canonical_username("\uff42\uff4f\uff42") == "bob"  # fullwidth, folded by NFKD


@pytest.fixture
def guarded_client(settings):
    """An app whose per-account limit is small enough to reach in a test."""
    from web.app import create_app

    return create_app(settings.model_copy(update={
        "login_failure_limit": "3/minute", "login_account_failure_limit": "6/minute",
    })).test_client()


def test_guessing_from_many_addresses_is_slowed_but_the_owner_still_logs_in(guarded_client,
                                                                           bob):
    owner_address = _address()
    assert _login(guarded_client, bob["username"], bob["password"], owner_address) == 200

    # Two failures from each of three addresses: under the per-address limit (3), at the
    # per-account one (6).
    for _ in range(3):
        guesser = _address()
        assert [_login(guarded_client, bob["username"], "guess", guesser)
                for _ in range(2)] == [401, 401]
    # Any other address is refused now, even with the right password...
    assert _login(guarded_client, bob["username"], "guess", _address()) == 429
    assert _login(guarded_client, bob["username"].upper(), bob["password"], _address()) == 429
    # ...but the owner, from an address the account logged in from, is not locked out.
    assert _login(guarded_client, bob["username"], bob["password"], owner_address) == 200


def test_guessing_the_current_password_with_a_stolen_token_is_throttled(client, settings,
                                                                      accounts):
    account = accounts.create()
    headers = {"Authorization": f"Bearer {accounts.login(account)['access_token']}"}
    limit = int(settings.login_failure_limit.split()[0])

    def change(current: str, address: str) -> int:
        return client.post("/api/auth/password", headers=headers, json={
            "current_password": current, "new_password": "a-brand-new-passphrase"},
            environ_base={"REMOTE_ADDR": address}).status_code

    assert [change("guess", _address()) for _ in range(limit)] == [403] * limit
    assert change(account["password"], _address()) == 429  # from any address


def _console_sign_in(client, username: str, password: str, address: str) -> int:
    """The console's sign-in form, with the CSRF token its page hands out."""
    import re

    page = client.get("/console/login", environ_base={"REMOTE_ADDR": address})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
    return client.post("/console/login", environ_base={"REMOTE_ADDR": address}, data={
        "csrf_token": token, "username": username, "password": password}).status_code


def test_the_console_sign_in_shares_the_logins_limits(app, settings, bob):
    """Failures through the console count against the API's login, and the other way round:
    the console is no second door for a guesser."""
    address = _address()
    console, api = app.test_client(), app.test_client()
    limit = int(settings.login_failure_limit.split()[0])
    for i in range(limit):
        if i % 2:
            assert _console_sign_in(console, bob["username"], "wrong-password", address) == 401
        else:
            assert _login(api, bob["username"], "wrong-password", address) == 401
    assert _login(api, bob["username"], bob["password"], address) == 429
    assert _console_sign_in(console, bob["username"], bob["password"], address) == 429
    other = _address()  # a good password elsewhere still signs in, through the console too
    assert _console_sign_in(console, bob["username"], bob["password"], other) == 303
