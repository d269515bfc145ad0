"""The console's forms refuse bad input with a 4xx page, never a 500, and change nothing."""

from __future__ import annotations

import re

import pytest

GARBAGE = {"role": "emperor", "active": "maybe", "n": "many", "rpm_limit": "x",
           "tpm_limit": "-3", "budget_amount": "abc", "budget_period": "week", "model": "nope",
           "prompt": "", "size": "huge", "name": "", "models": "not-a-model",
           "expires_at": "2026-99-99", "username": "", "password": "", "email": "not-mail"}
# Signing in and out have their own tests (tests/browser, test_login_throttling).
SKIPPED = {"console.sign_in", "console.sign_out", "console.v1_token"}  # the last takes no form


def _token(client, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page)[1]


@pytest.fixture
def signed_in_admin(app, accounts):
    account = accounts.create("admin", password="a-long-admin-password-1")
    client = app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    response = client.post("/console/login", data={
        "csrf_token": token, "username": account["username"],
        "password": account["password"]})
    assert response.status_code == 303
    return client


def test_every_console_form_refuses_garbage_with_a_4xx_page(app, signed_in_admin):
    client = signed_in_admin
    checked = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or "POST" not in rule.methods \
                or rule.endpoint in SKIPPED:
            continue
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        token = _token(client, "/console/playground")
        response = client.post(path, data={**GARBAGE, "csrf_token": token},
                               headers={"HX-Request": "true"})
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.mimetype == "text/html"
        assert 'role="alert"' in response.get_data(as_text=True), path
        checked.append(rule.endpoint)
    assert {"console.create_key", "console.admin_update_user", "console.playground_image",
            "console.playground_video", "console.admin_create_user"} <= set(checked)


def test_the_video_form_offers_what_the_models_row_allows_and_refuses_the_rest(
        signed_in_admin):
    """The fields follow the model's row of VIDEO_MODELS, and a submission is checked by the
    API's own rules (VideoRequest.rule_errors), with nothing submitted."""
    client = signed_in_admin
    fields = client.get("/console/playground/video/fields?model=wan2.2-i2v-flash&prompt=a+cat",
                        headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'name="resolution"' in fields and 'name="size"' not in fields
    assert 'name="image"' in fields and ">a cat</textarea>" in fields
    assert all(f"<option>{r}</option>" in fields for r in ("480P", "720P", "1080P"))
    token = _token(client, "/console/playground")
    refused = client.post("/console/playground/video", headers={"HX-Request": "true"}, data={
        "csrf_token": token, "model": "wan2.2-i2v-flash", "resolution": "1080P",
        "duration": "7", "prompt": "a cat"})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "needs image" in page and "duration" in page
