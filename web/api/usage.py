"""Usage and cost reports."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, request
from flask_jwt_extended import current_user

from common.accounts.models import User
from common.billing import reports
from common.errors import PermissionDenied, ValidationFailed
from web.authentication import api_key, login_required
from web.context import db_session, services
from web.envelope import ok
from web.openapi import ERROR, documented
from web.request_models import UsageQuery
from web.response_models import UsageReport
from web.validation import parse_query

bp = Blueprint("usage", __name__, url_prefix="/api/usage")


@bp.get("")
@documented(summary="Tokens, images and cost over a time range", tag="usage",
            query=UsageQuery, description="group_by=key groups by the API key that paid "
            "(null: a login). `budget` shows the caller's budgets now: spent, reserved by jobs "
            "in flight, remaining and the reset time. With Accept: text/csv, the usage rows "
            "themselves as CSV.",
            responses={200: UsageReport, 400: ERROR, 403: ERROR})
@login_required(api_keys=True)
def get_usage():
    query = parse_query(UsageQuery)
    start, end = query.window()
    if start >= end:
        raise ValidationFailed(errors=[{"field": "start", "message": "start must be before end"}])
    asks_for_other = query.all or (query.user_id not in (None, current_user.id))
    if asks_for_other and not current_user.is_admin:
        raise PermissionDenied("Only admins may see other users' usage")
    user_id = None if query.all else (query.user_id or current_user.id)
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        return usage_csv(reports.rows(session=db_session(), start=start, end=end,
                                      user_id=user_id))
    report = reports.summarize(session=db_session(), start=start, end=end, user_id=user_id,
                             group_by=query.group_by)
    scope = {"user_id": user_id} if user_id is not None else {"all_users": True}
    return ok({"start": start.isoformat() + "Z", "end": end.isoformat() + "Z",
               "currency": services().settings.price_currency, **scope, **report,
               "budget": budget_status(user_id)})


def budget_status(user_id: int | None) -> dict | None:
    """The budgets of the user reported on (and of the calling key), as they stand now."""
    if user_id is None:
        return None
    svc = services()
    budgets = svc.lifecycle.budgets
    user = db_session().get(User, user_id)
    key = api_key()
    with svc.database.connect() as conn:
        state = {"user": budgets.status(
            conn, scope="user", owner_id=user_id,
            spec=budgets.user_budget(conn, user_id, user.role)) if user else None}
        if key is not None and user_id == key.user_id:
            state["key"] = budgets.status(conn, scope="key", owner_id=key.id, spec=key.budget)
    return state


def usage_csv(records) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(reports.CSV_COLUMNS)
    for record in records:
        writer.writerow([record.created_at.isoformat() + "Z" if column == "created_at"
                         else getattr(record, column) for column in reports.CSV_COLUMNS])
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=usage.csv"})
