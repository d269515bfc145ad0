"""Each user's webhook signing secret: made on first use, rotated on request. After a rotation
the previous secret keeps signing (beside the new one) for WEBHOOK_SECRET_OVERLAP_SECONDS, so
receivers can switch without losing a delivery.

Stored as they are, not hashed: the platform must compute HMACs with them and show them to
their owner again (GET /api/webhooks/secret), as Stripe and Svix do."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from common.infra.orm import utcnow
from common.webhooks.models import WebhookSecret
from common.webhooks.signing import new_secret

secrets_table = WebhookSecret.__table__
c = secrets_table.c


@dataclasses.dataclass(frozen=True)
class SecretState:
    secret: str
    previous_secret: str | None
    previous_until: dt.datetime | None
    created_at: dt.datetime
    rotated_at: dt.datetime | None

    def signing(self, now: dt.datetime) -> list[str]:
        """The secrets that sign a delivery made at `now`: the current one first."""
        if self.previous_secret and self.previous_until and self.previous_until > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


def current(conn: Connection, user_id: int) -> SecretState:
    """The user's secret, made now if the user has none yet."""
    row = _read(conn, user_id)
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(secrets_table).values(user_id=user_id, secret=new_secret(),
                                                          created_at=utcnow()))
        except IntegrityError:
            pass  # made by a concurrent request
        row = _read(conn, user_id)
    return SecretState(**row._asdict())


def rotate(conn: Connection, user_id: int, *, overlap_seconds: float) -> SecretState:
    """A new secret; the one it replaces signs too for `overlap_seconds`."""
    old = current(conn, user_id)
    now = utcnow()
    conn.execute(update(secrets_table).where(c.user_id == user_id).values(
        secret=new_secret(), previous_secret=old.secret, rotated_at=now,
        previous_until=now + dt.timedelta(seconds=overlap_seconds)))
    return SecretState(**_read(conn, user_id)._asdict())


def _read(conn: Connection, user_id: int):
    return conn.execute(select(c.secret, c.previous_secret, c.previous_until, c.created_at,
                               c.rotated_at).where(c.user_id == user_id)).one_or_none()
