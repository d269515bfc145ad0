"""Parse request bodies and query strings into pydantic models, or fail with per-field errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import Flask, g, request
from pydantic import BaseModel, ValidationError

from common.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)


# Names pydantic puts in an error location for the branch of a union, not for a field.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def field_errors(exc: ValidationError) -> list[dict]:
    """pydantic's errors as [{field, message}], with dotted field paths (union branch tags
    such as `constrained-str` dropped, so a client sees the field it sent)."""
    errors = []
    for err in exc.errors(include_url=False):
        parts = [str(p) for p in err["loc"]
                 if isinstance(p, int) or (p.isidentifier() and p not in _TYPE_TAGS)]
        entry = {"field": ".".join(parts) or "body", "message": err["msg"]}
        if entry not in errors:
            errors.append(entry)
    return errors


def init_app(app: Flask) -> None:
    # Every body is decoded once, before any view, limiter key or guard reads it: a body no
    # route could read is refused in this one place, whatever the route does with it.
    app.before_request(_refuse_unreadable_body)


def _refuse_unreadable_body() -> None:
    # The console's forms are urlencoded (web/console reads them as forms, never as JSON); a
    # multipart body (POST /api/files) is a form: its route reads it as one, within its own
    # size limit; any JSON route that gets one still refuses it in parse_body.
    if request.method in ("POST", "PUT", "PATCH") and request.blueprint != "console" \
            and request.mimetype != "multipart/form-data":
        request_json()


def request_json() -> Any:
    """The request's JSON body (None when there is none), decoded once per request.

    Size is bounded before decoding by MAX_CONTENT_LENGTH (413). Depth is bounded by the
    standard library's decoder, which raises RecursionError past the interpreter's recursion
    limit (about 1,000 levels) instead of overflowing the stack; Flask's get_json(silent=True)
    only swallows ValueError, so that RecursionError was a 500. Nothing deeper than the
    decoder's bound can exist afterwards, and no request model has a free-form field that
    would walk such a value, so no separate pre-parse scan (a Python loop over every byte) is
    needed."""
    if "json_body" in g:
        return g.json_body
    raw = request.get_data(cache=True)
    payload = None
    if raw.strip():
        try:
            payload = json.loads(raw)
        except RecursionError:
            # `from None`: the chained traceback would be a thousand frames deep.
            raise ValidationFailed("Request body is nested too deeply", errors=[
                {"field": "body", "message": "JSON nested too deeply"}]) from None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise ValidationFailed("Request body is not valid JSON", errors=[
                {"field": "body", "message": "expected a JSON object"}]) from None
    g.json_body = payload
    return payload


def parse_body(model: type[M], context: dict | None = None) -> M:
    """The JSON body as `model`; malformed JSON and wrong fields are 400s, never 500s."""
    payload = request_json()
    if not isinstance(payload, dict):
        raise ValidationFailed("Request body must be a JSON object",
                               errors=[{"field": "body", "message": "expected a JSON object"}])
    return validate(model, payload, context)


def parse_query(model: type[M]) -> M:
    return validate(model, request.args.to_dict())


def validate(model: type[M], payload: dict, context: dict | None = None) -> M:
    try:
        return model.model_validate(payload, context=context)
    except ValidationError as exc:
        raise ValidationFailed(errors=field_errors(exc)) from exc
