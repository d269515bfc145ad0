"""The operator's pages: users, spend by user and by key, and the system now. Every view is
refused on the server to anyone but an admin (admin_only), whatever links a page shows."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from common.accounts import users
from common.accounts.models import Role
from common.billing import reports
from common.jobs.operations import system_overview
from web.console import bp, signed_in
from web.console.forms import budget, text
from web.console.pages import usage_window
from web.console.session import admin_only
from web.context import db_session, services
from web.request_models import CreateUserRequest, UpdateUserRequest
from web.validation import validate


@bp.get("/admin/users")
@admin_only
def admin_users():
    return render_template("console/admin_users.html", users=users.list_users(session=db_session()),
                           roles=list(Role))


@bp.post("/admin/users")
@admin_only
def admin_create_user():
    form = request.form
    body = validate(CreateUserRequest, {
        "username": form.get("username", ""), "password": form.get("password", ""),
        "email": text(form, "email"), "role": form.get("role") or Role.DEFAULT.value})
    session = db_session()
    users.create_user(session=session, username=body.username, password=body.password,
                      email=body.email, role=body.role)
    session.commit()
    return redirect(url_for("console.admin_users"), code=303)


@bp.post("/admin/users/<int:user_id>")
@admin_only
def admin_update_user(user_id: int):
    """Tier, active flag and budget: the same use cases as PATCH /api/admin/users/<id>."""
    form = request.form
    body = validate(UpdateUserRequest, {"role": form.get("role") or None,
                                        "active": form.get("active") == "on",
                                        "budget": budget(form)})
    session = db_session()
    users.set_budget(session=session, user_id=user_id, budget=body.budget)
    users.change_user(session=session, auth_state=services().auth_state, user_id=user_id,
                      actor_id=signed_in().id, role=body.role, is_active=body.active)
    return redirect(url_for("console.admin_users"), code=303)


@bp.get("/admin/spend")
@admin_only
def admin_spend():
    start, end, _ = usage_window()
    session = db_session()
    by_user = reports.summarize(session=session, start=start, end=end, user_id=None,
                                group_by="user")
    by_key = reports.summarize(session=session, start=start, end=end, user_id=None,
                               group_by="key")
    names = {user.id: user.username for user in users.list_users(session=session)}
    keys = {key.id: key for key in services().api_keys.list(session, user_id=None,
                                                             include_revoked=True)}
    return render_template("console/admin_spend.html", by_user=by_user, by_key=by_key,
                           names=names, keys=keys, start=start, end=end,
                           currency=services().settings.price_currency)


@bp.get("/admin/system")
@admin_only
def admin_system():
    svc = services()
    overview = system_overview(settings=svc.settings, database=svc.database,
                               redis_client=svc.redis, celery=svc.celery)
    return render_template("console/admin_system.html", overview=overview,
                           grafana_url=svc.settings.console_grafana_url,
                           flower_url=svc.settings.console_flower_url)
