"""User administration, for admins only."""

from __future__ import annotations

from flask import Blueprint
from flask_jwt_extended import current_user

from common.accounts import users
from web.authentication import admin_required
from web.context import db_session, services
from web.envelope import ok
from web.openapi import ERROR, documented
from web.request_models import CreateUserRequest, UpdateUserRequest
from web.response_models import UserData
from web.serializers import user_data
from web.validation import parse_body

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


@bp.post("/users")
@documented(summary="Create a user", tag="admin", body=CreateUserRequest,
            responses={201: UserData, 403: ERROR, 409: ERROR})
@admin_required
def create_user():
    body = parse_body(CreateUserRequest)
    session = db_session()
    user = users.create_user(session=session, username=body.username, password=body.password,
                             email=body.email, role=body.role)
    session.commit()
    return ok(user_data(user), "User created", status=201)


@bp.get("/users")
@documented(summary="List users", tag="admin", responses={200: list[UserData], 403: ERROR})
@admin_required
def list_users():
    return ok([user_data(u) for u in users.list_users(session=db_session())])


@bp.patch("/users/<int:user_id>")
@documented(summary="Change a user's role or active flag (applies on their next request)",
            tag="admin", body=UpdateUserRequest,
            responses={200: UserData, 403: ERROR, 404: ERROR, 409: ERROR})
@admin_required
def update_user(user_id: int):
    body = parse_body(UpdateUserRequest)
    if "budget" in body.model_fields_set:
        users.set_budget(session=db_session(), user_id=user_id, budget=body.budget)
    user = users.change_user(session=db_session(), auth_state=services().auth_state,
                             user_id=user_id, actor_id=current_user.id, role=body.role,
                             is_active=body.active)
    return ok(user_data(user), "User updated")


@bp.post("/users/<int:user_id>/revoke-sessions")
@documented(summary="End every session of a user (all their tokens are refused from now on)",
            tag="admin", responses={200: UserData, 403: ERROR, 404: ERROR})
@admin_required
def revoke_sessions(user_id: int):
    user = users.revoke_sessions(session=db_session(), auth_state=services().auth_state,
                                 user_id=user_id)
    return ok(user_data(user), "Sessions revoked")
