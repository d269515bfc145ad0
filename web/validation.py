"""Parse request bodies and query strings into pydantic models, or fail with per-field errors."""

from __future__ import annotations

from typing import TypeVar

from flask import request
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
