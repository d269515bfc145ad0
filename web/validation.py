"""Parse request bodies and query strings into pydantic models, or fail with per-field errors."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from common.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)


def field_errors(exc: ValidationError) -> list[dict]:
    """pydantic's errors as [{field, message}], with dotted field paths."""
    errors = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "body"
        errors.append({"field": field, "message": err["msg"]})
    return errors


def parse_body(model: type[M], context: dict | None = None) -> M:
    """The JSON body as `model`; malformed JSON and wrong fields are 400s, never 500s."""
    payload = request.get_json(force=True, silent=True)
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
