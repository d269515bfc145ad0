"""Usage and cost reports."""

from __future__ import annotations

from flask import Blueprint
from flask_jwt_extended import current_user

from common.billing import reports
from common.errors import PermissionDenied, ValidationFailed
from web.authentication import login_required
from web.context import db_session, services
from web.envelope import ok
from web.openapi import ERROR, documented
from web.request_models import UsageQuery
from web.response_models import UsageReport
from web.validation import parse_query

bp = Blueprint("usage", __name__, url_prefix="/api/usage")


@bp.get("")
@documented(summary="Tokens, images and cost over a time range", tag="usage",
            query=UsageQuery, responses={200: UsageReport, 400: ERROR, 403: ERROR})
@login_required
def get_usage():
    query = parse_query(UsageQuery)
    start, end = query.window()
    if start >= end:
        raise ValidationFailed(errors=[{"field": "start", "message": "start must be before end"}])
    asks_for_other = query.all or (query.user_id not in (None, current_user.id))
    if asks_for_other and not current_user.is_admin:
        raise PermissionDenied("Only admins may see other users' usage")
    user_id = None if query.all else (query.user_id or current_user.id)
    report = reports.summarize(session=db_session(), start=start, end=end, user_id=user_id,
                             group_by=query.group_by)
    scope = {"user_id": user_id} if user_id is not None else {"all_users": True}
    return ok({"start": start.isoformat() + "Z", "end": end.isoformat() + "Z",
               "currency": services().settings.price_currency, **scope, **report})
