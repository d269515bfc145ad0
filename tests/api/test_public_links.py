"""Links come from PUBLIC_BASE_URL, never from the Host header or an untrusted proxy header."""

from __future__ import annotations

import pytest

from tests.conftest import Accounts

ASYNC = {"Prefer": "respond-async"}
CHAT = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hi"}]}
EVIL = "evil.example"
HOSTILE = {"X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https", "X-Forwarded-For": "6.6.6.6",
           "Forwarded": f"host={EVIL}"}


def _client_for(settings, database, **changes):
    from web.app import create_app

    client = create_app(settings.model_copy(update=changes)).test_client()
    return client, Accounts(database, client)


@pytest.mark.parametrize("changes, prefix", [
    ({}, "/api/jobs/"),
    ({"trusted_proxy_hops": 1}, "/api/jobs/"),
    ({"public_base_url": "https://api.example.com"}, "https://api.example.com/api/jobs/"),
    ({"public_base_url": "https://api.example.com", "trusted_proxy_hops": 2},
     "https://api.example.com/api/jobs/"),
], ids=["relative", "relative-behind-a-proxy", "public-base-url", "public-base-url-and-proxy"])
def test_a_hostile_host_never_appears_in_a_link(settings, database, changes, prefix):
    client, accounts = _client_for(settings, database, **changes)
    _, auth = accounts.headers()
    submitted = client.post("/api/bailian/chat/completions", json=CHAT,
                            base_url=f"http://{EVIL}", headers={**auth, **ASYNC, **HOSTILE})
    assert submitted.status_code == 202, submitted.json
    job = submitted.json["data"]
    assert submitted.headers["Location"] == f"{prefix}{job['id']}"
    assert job["links"] == {"self": f"{prefix}{job['id']}",
                            "cancel": f"{prefix}{job['id']}/cancel"}
    read = client.get(f"/api/jobs/{job['id']}", base_url=f"http://{EVIL}",
                      headers={**auth, **HOSTILE})
    assert read.status_code == 200
    for response in (submitted, read):
        assert EVIL not in response.get_data(as_text=True)
        assert EVIL not in str(response.headers)


@pytest.mark.parametrize("value", ["api.example.com", "ftp://api.example.com",
                                   "https://api.example.com/?a=1", "https://u:p@api.example.com"])
def test_a_public_base_url_that_is_no_origin_is_refused_at_start(base_env, value):
    from pydantic import ValidationError

    from tests.conftest import settings_from_env

    with pytest.raises(ValidationError, match="PUBLIC_BASE_URL"):
        settings_from_env({**base_env, "PUBLIC_BASE_URL": value})


def test_the_old_trusted_proxies_name_still_sets_the_hops(base_env):
    from tests.conftest import settings_from_env

    assert settings_from_env({**base_env, "TRUSTED_PROXIES": "2"}).trusted_proxy_hops == 2
    assert settings_from_env({**base_env, "TRUSTED_PROXY_HOPS": "3"}).trusted_proxy_hops == 3


def test_a_trailing_slash_of_the_public_base_url_is_dropped(base_env):
    from tests.conftest import settings_from_env

    settings = settings_from_env({**base_env, "PUBLIC_BASE_URL": "https://api.example.com/v/"})
    assert settings.public_base_url == "https://api.example.com/v"
