"""API keys: create (the secret is shown once), list, change, revoke. Managing keys needs a
login; a key cannot manage keys. Admins see and revoke any user's keys."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask_jwt_extended import current_user

from common.accounts.api_keys import budget_of
from common.accounts.models import ApiKey
from common.errors import PermissionDenied
from web.authentication import login_required
from web.context import db_session, services
from web.envelope import ok
from web.openapi import ERROR, documented
from web.request_models import CreateKeyRequest, KeyListQuery, UpdateKeyRequest
from web.response_models import ApiKeyData, BudgetData, CreatedApiKeyData
from web.validation import parse_body, parse_query

bp = Blueprint("keys", __name__, url_prefix="/api/keys")


def _when(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def key_data(row: ApiKey, model=ApiKeyData, **extra) -> ApiKeyData:
    key = row
    budgets = services().lifecycle.budgets
    budget = budget_of(key)
    with services().database.connect() as conn:
        spend = budgets.spent_this_period(conn, scope="key", owner_id=key.id, spec=budget)
    return model(
        id=key.id, user_id=key.user_id, name=key.name, prefix=key.prefix,
        last_four=key.last_four, models=key.models, rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        budget=BudgetData(amount=float(budget.amount), period=budget.period) if budget else None,
        expires_at=_when(key.expires_at), created_at=_when(key.created_at),
        last_used_at=_when(key.last_used_at), revoked_at=_when(key.revoked_at),
        spend_this_period=spend, **extra)


def check_models(models: list[str] | None) -> None:
    if models is None:
        return
    settings = services().settings
    known = set(settings.chat_models) | set(settings.task_models)
    unknown = sorted(set(models) - known)
    if unknown:
        from common.errors import ValidationFailed

        raise ValidationFailed(errors=[{"field": "models",
                                        "message": f"unknown models: {', '.join(unknown)}"}])


def _owner_scope() -> int | None:
    """Whose keys the caller may touch: their own, or (admins) anyone's."""
    return None if current_user.is_admin else current_user.id


@bp.post("")
@documented(summary="Create an API key (the secret is in this answer only)", tag="keys",
            body=CreateKeyRequest, responses={201: CreatedApiKeyData, 400: ERROR, 403: ERROR})
@login_required
def create_key():
    body = parse_body(CreateKeyRequest)
    check_models(body.models)
    key, secret = services().api_keys.create(
        db_session(), user_id=current_user.id, name=body.name, expires_at=body.expires_at,
        models=body.models, rpm_limit=body.rpm_limit, tpm_limit=body.tpm_limit,
        budget=body.budget)
    return ok(key_data(key, CreatedApiKeyData, key=secret),
              "API key created; store the key now, it is not shown again", status=201)


@bp.get("")
@documented(summary="Your API keys (admins: ?user_id= or ?all=true); never the secrets",
            tag="keys", query=KeyListQuery,
            responses={200: list[ApiKeyData], 400: ERROR, 403: ERROR})
@login_required
def list_keys():
    query = parse_query(KeyListQuery)
    if (query.all or query.user_id not in (None, current_user.id)) and \
            not current_user.is_admin:
        raise PermissionDenied("Only admins may see other users' keys")
    user_id = None if query.all else (query.user_id or current_user.id)
    keys = services().api_keys.list(db_session(), user_id=user_id)
    return ok([key_data(key) for key in keys])


@bp.patch("/<int:key_id>")
@documented(summary="Change a key's name, limits, allow-list or budget (applies at once)",
            tag="keys", body=UpdateKeyRequest,
            responses={200: ApiKeyData, 400: ERROR, 403: ERROR, 404: ERROR})
@login_required
def update_key(key_id: int):
    body = parse_body(UpdateKeyRequest)
    check_models(body.models)
    session = db_session()
    key = services().api_keys.get(session, key_id, user_id=_owner_scope())
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if changes.get("name", "") is None:
        changes.pop("name")
    key = services().api_keys.change(session, key, **changes)
    return ok(key_data(key), "API key updated")


@bp.delete("/<int:key_id>")
@documented(summary="Revoke a key: refused by every process from the next request",
            tag="keys", responses={200: ApiKeyData, 403: ERROR, 404: ERROR})
@login_required
def revoke_key(key_id: int):
    session = db_session()
    key = services().api_keys.get(session, key_id, user_id=_owner_scope())
    return ok(key_data(services().api_keys.revoke(session, key)), "API key revoked")
