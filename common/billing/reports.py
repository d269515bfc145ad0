"""Usage reports: a user's (or everyone's) tokens, images, seconds of video and cost over a
time range."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.billing.models import UsageRecord

GROUPINGS = ("model", "day", "key", "user")


def summarize(*, session: Session, start: dt.datetime, end: dt.datetime,
              user_id: int | None, group_by: str | tuple[str, ...] | None = None) -> dict:
    """Totals over [start, end), optionally per model, UTC day, API key or user, or per
    combination of them (a tuple, e.g. ("day", "model"): one group per pair that has usage);
    user_id None = everyone."""
    measures = (
        func.count(UsageRecord.id).label("requests"),
        func.coalesce(func.sum(UsageRecord.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(UsageRecord.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(UsageRecord.total_tokens), 0).label("total_tokens"),
        func.coalesce(func.sum(UsageRecord.image_count), 0).label("image_count"),
        func.coalesce(func.sum(UsageRecord.video_seconds), 0).label("video_seconds"),
        func.coalesce(func.sum(UsageRecord.cost), 0).label("cost"),
        func.coalesce(func.sum(UsageRecord.compute_cost), 0).label("compute_cost"),
    )
    where = [UsageRecord.created_at >= start, UsageRecord.created_at < end]
    if user_id is not None:
        where.append(UsageRecord.user_id == user_id)
    totals = session.execute(select(*measures).where(*where)).one()
    report = {"totals": _row(totals)}
    if group_by:
        names = (group_by,) if isinstance(group_by, str) else tuple(group_by)
        keys = [_GROUP_COLUMNS[name]().label(f"key_{name}") for name in names]
        rows = session.execute(select(*keys, *measures).where(*where)
                               .group_by(*keys).order_by(*keys)).all()
        report["groups"] = [{**{name: _group_key(name, getattr(row, f"key_{name}"))
                                for name in names}, **_row(row)} for row in rows]
    return report


_GROUP_COLUMNS = {
    "model": lambda: UsageRecord.model,
    "day": lambda: func.date(UsageRecord.created_at),
    "key": lambda: UsageRecord.api_key_id,
    "user": lambda: UsageRecord.user_id,
}


def _group_key(group_by: str, value):
    if group_by == "key":  # null: paid without an API key (a login's token)
        return int(value) if value is not None else None
    if group_by == "user":
        return int(value)
    return str(value)


def rows(*, session: Session, start: dt.datetime, end: dt.datetime,
         user_id: int | None, limit: int = 100_000) -> list[UsageRecord]:
    """The usage rows themselves, oldest first (the CSV export)."""
    query = select(UsageRecord).where(UsageRecord.created_at >= start,
                                      UsageRecord.created_at < end)
    if user_id is not None:
        query = query.where(UsageRecord.user_id == user_id)
    return list(session.scalars(query.order_by(UsageRecord.created_at, UsageRecord.id)
                                .limit(limit)))


CSV_COLUMNS = ("created_at", "job_id", "user_id", "api_key_id", "kind", "model",
               "input_tokens", "output_tokens", "total_tokens", "image_count", "estimated",
               "cost", "compute_cost", "currency", "path", "video_seconds", "video_count")


def _row(row) -> dict:
    return {
        "requests": int(row.requests),
        "input_tokens": int(row.input_tokens),
        "output_tokens": int(row.output_tokens),
        "total_tokens": int(row.total_tokens),
        "image_count": int(row.image_count),
        "video_seconds": int(row.video_seconds),
        "cost": _money(row.cost),  # everything, Function Compute included
        "compute_cost": _money(row.compute_cost),
    }


def _money(value) -> float:
    return float(Decimal(value).quantize(Decimal("0.00000001")))
