"""The OpenAPI 3.1 document, generated from the routes and the pydantic models that validate
their requests and describe their responses; no hand-kept copy to drift from the code.

Each view declares what it takes and returns with `@documented(...)`; `build_spec(app)` walks
the app's URL map, so a route without a declaration fails the test that compares the two.
Served at /api/openapi.json, with Swagger UI at /api/docs (assets from the flask-swagger-ui
package, no CDN).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common import VERSION
from web.response_models import FieldError

JSON = "application/json"
ERROR = None  # a response whose envelope carries no data
STANDARD = {500: ERROR}
AUTHENTICATED = {401: ERROR, 503: ERROR}
WITH_BODY = {400: ERROR, 413: ERROR}


@dataclasses.dataclass(frozen=True)
class Doc:
    summary: str
    responses: dict[int, Any]  # status -> data model (or a list of them), ERROR, or RAW(...)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: bool = True
    tag: str = "api"
    headers: tuple[str, ...] = ()  # request headers the operation reads
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Raw:
    """A response that is not the JSON envelope (health probes, metrics, images)."""

    content_type: str
    model: type[BaseModel] | None = None
    description: str = ""


def documented(**kwargs):
    """Attach the OpenAPI description of a view (kept through functools.wraps wrappers)."""
    doc = Doc(**kwargs)

    def attach(view):
        view.__openapi__ = doc
        return view
    return attach


REQUEST_HEADERS = {
    "Idempotency-Key": {"description": "Replays the same job for the same body (24 h); "
                        "another body with the same key is a 409",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
    "Prefer": {"description": "`respond-async` answers 202 at once; `wait=N` waits at most N "
               "seconds", "schema": {"type": "string"}},
    "X-Cancel-On-Disconnect": {"description": "With stream: true, `true` cancels the job when "
                               "the client disconnects (by default it runs on and can be "
                               "watched at GET /api/jobs/<id>/stream)",
                               "schema": {"type": "string", "enum": ["true", "false"]}},
    "Last-Event-ID": {"description": "Resume the stream after this event (the `id:` of the "
                      "last event received)",
                      "schema": {"type": "string", "pattern": r"^\d+-\d+$"}},
}


def build_spec(app: Flask) -> dict:
    operations = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        doc = getattr(view, "__openapi__", None)
        if doc is None:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operations.append((rule, method, doc))
    schemas = _component_schemas(operations)
    paths: dict[str, dict] = {}
    for rule, method, doc in operations:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        paths.setdefault(path, {})[method.lower()] = _operation(rule, method, doc, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bailian-backend", "version": VERSION,
                 "description": "DashScope (Qwen chat, Wanx images) as authenticated, "
                                "rate-limited jobs. Every /api response is the envelope "
                                "{code, message, data[, errors], request_id}."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key",
                "description": "A login's access token, or an API key (bk_...) on /v1, the "
                               "job, usage, chat and generation endpoints"}},
        },
    }


def _models(operations) -> list[tuple[type[BaseModel], str]]:
    found: dict[tuple[type[BaseModel], str], None] = {(FieldError, "serialization"): None}
    for _rule, _method, doc in operations:
        for model in (doc.body, doc.query):
            if model is not None:
                found[(model, "validation")] = None
        for response in doc.responses.values():
            for model in _data_models(response):
                found[(model, "serialization")] = None
    return list(found)


def _data_models(response) -> list[type[BaseModel]]:
    if isinstance(response, Raw):
        return [response.model] if response.model else []
    models = response if isinstance(response, list) else [response]
    models = [typing.get_args(m)[0] if typing.get_origin(m) is list else m for m in models]
    return [m for m in models if isinstance(m, type) and issubclass(m, BaseModel)]


def _component_schemas(operations) -> dict:
    _, top = models_json_schema(_models(operations),
                                ref_template="#/components/schemas/{model}")
    return top.get("$defs", {})


def _ref(model) -> dict:
    if typing.get_origin(model) is list:  # list[Model] as a response
        return {"type": "array", "items": _ref(typing.get_args(model)[0])}
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _data_schema(response) -> dict:
    if response is ERROR:
        return {"type": "null"}
    models = response if isinstance(response, list) else [response]
    options = [{"type": "null"} if m is ERROR else _ref(m) for m in models]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _envelope(status: int, response) -> dict:
    return {"type": "object", "required": ["code", "message", "data"],
            "additionalProperties": False, "properties": {
                "code": {"type": "integer", "const": status},
                "message": {"type": "string"},
                "data": _data_schema(response),
                "errors": {"type": "array", "items": _ref(FieldError)},
                "request_id": {"type": ["string", "null"]}}}


def _operation(rule, method: str, doc: Doc, schemas: dict) -> dict:
    responses = {**STANDARD, **(AUTHENTICATED if doc.auth else {}),
                 **(WITH_BODY if doc.body else {}), **doc.responses}
    operation: dict[str, Any] = {
        "summary": doc.summary, "tags": [doc.tag],
        "operationId": f"{rule.endpoint.replace('.', '_')}_{method.lower()}",
        "parameters": _path_parameters(rule) + _query_parameters(doc.query, schemas) + [
            {"name": name, "in": "header", "required": False, **REQUEST_HEADERS[name]}
            for name in doc.headers],
        "responses": {str(status): _response(status, response)
                      for status, response in sorted(responses.items())},
    }
    if doc.description:
        operation["description"] = doc.description
    if doc.auth:
        operation["security"] = [{"bearerAuth": []}]
    if doc.body:
        operation["requestBody"] = {"required": True,
                                    "content": {JSON: {"schema": _ref(doc.body)}}}
    return operation


def _response(status: int, response) -> dict:
    headers = {"X-Request-ID": {"schema": {"type": "string"},
                                "description": "The request's correlation id"}}
    if isinstance(response, Raw):
        content = {response.content_type: {"schema": _ref(response.model) if response.model
                                           else {"type": "string"}}} \
            if response.content_type else {}
        return {"description": response.description or f"HTTP {status}",
                "headers": headers, **({"content": content} if content else {})}
    if status == 202:
        headers["Location"] = {"schema": {"type": "string"},
                               "description": "Where to poll the job"}
    return {"description": f"HTTP {status}", "headers": headers,
            "content": {JSON: {"schema": _envelope(status, response)}}}


def _path_parameters(rule) -> list[dict]:
    parameters = []
    for converter, name in re.findall(r"<(?:([^:<>]+):)?([^<>]+)>", rule.rule):
        schema = {"type": "integer"} if converter == "int" else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(model: type[BaseModel] | None, schemas: dict) -> list[dict]:
    if model is None:
        return []
    schema = schemas[model.__name__]
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required,
             "schema": _without_null(prop)} for name, prop in schema.get("properties", {}).items()]


def _without_null(schema: dict) -> dict:
    """A query string cannot carry null: an optional parameter is simply left out."""
    schema = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    options = [o for o in schema.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    return schema


def init_app(app: Flask) -> None:
    bp = Blueprint("openapi", __name__)

    @bp.get("/api/openapi.json")
    @documented(summary="This OpenAPI document", auth=False, tag="meta",
                responses={200: Raw(JSON, description="OpenAPI 3.1")})
    def openapi_document():
        return jsonify(current_app.extensions["openapi"])

    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint(
        "/api/docs", "/api/openapi.json", blueprint_name="docs",
        config={"app_name": "bailian-backend API"}))
    app.view_functions["docs.show"].__openapi__ = Doc(
        summary="API documentation (Swagger UI and its assets, served locally)", auth=False,
        tag="meta", responses={200: Raw("", description="The page or one of its assets"),
                               404: ERROR})


def publish(app: Flask, settings) -> None:
    """Build the document once every route is registered, with the configured allow-lists
    (which the request models check through their validation context) spelled out."""
    spec = build_spec(app)
    schemas = spec["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]["properties"]
    chat["model"]["enum"] = sorted(settings.chat_models)
    chat["max_tokens"] = _with_maximum(chat["max_tokens"], max(settings.chat_models.values()))
    for schema, models in (("GenerationRequest", settings.image_models),
                           ("ImageEditRequest", settings.image_edit_models),
                           ("VideoRequest", settings.video_models)):
        schemas[schema]["properties"]["model"]["enum"] = sorted(models)
    app.extensions["openapi"] = spec


def _with_maximum(schema: dict, maximum: int) -> dict:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["maximum"] = maximum
    return schema
