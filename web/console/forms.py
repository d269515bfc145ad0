"""Form fields as the API's request models take them: the console validates what a user
typed with the same pydantic models (and so the same rules and messages) as the API."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from werkzeug.datastructures import MultiDict

from common.errors import ValidationFailed


def text(form: MultiDict, name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def integer(form: MultiDict, name: str) -> int | None:
    value = text(form, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationFailed(errors=[{"field": name, "message": "must be a whole number"}]) \
            from None


def budget(form: MultiDict) -> dict | None:
    """`budget_amount` and `budget_period` as the API's budget object (None: no budget)."""
    amount = text(form, "budget_amount")
    if amount is None:
        return None
    try:
        Decimal(amount)
    except InvalidOperation:
        raise ValidationFailed(errors=[{"field": "budget.amount", "message": "must be a number"}]) \
            from None
    return {"amount": amount, "period": form.get("budget_period") or "month"}
