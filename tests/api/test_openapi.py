"""The OpenAPI document covers every route, is generated from the validating models, and is
served with a docs page whose assets are local."""

from __future__ import annotations

import re

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _spec_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_is_in_the_spec(app, client):
    spec = client.get("/api/openapi.json").json
    missing = []
    for rule in app.url_map.iter_rules():
        # The console (web/console) is HTML for people, not part of the API's contract.
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue
        for method in rule.methods - IGNORED_METHODS:
            operation = spec["paths"].get(_spec_path(rule.rule), {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {rule.rule}")
    assert missing == [], f"routes missing from the OpenAPI document: {missing}"


def test_spec_is_openapi_3_1_built_from_the_request_models(client, settings):
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    schemas = spec["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]
    assert chat["additionalProperties"] is False  # the same strict model the view validates with
    assert chat["properties"]["model"]["enum"] == sorted(settings.chat_models)
    assert set(chat["required"]) == {"model", "messages"}
    assert "GenerationRequest" in schemas and "LoginRequest" in schemas
    operation = spec["paths"]["/api/bailian/chat/completions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert {"200", "202", "400", "401", "429", "503"} <= set(operation["responses"])
    assert operation["security"] == [{"bearerAuth": []}]
    listing = spec["paths"]["/api/jobs"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "kind", "cursor", "limit"}


def test_docs_page_is_served_with_local_assets(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/openapi.json" in html
    assert not re.search(r"(src|href)=\"https?://", html), "the docs page must not use a CDN"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert asset in html
        assert client.get(f"/api/docs/{asset}").status_code == 200
