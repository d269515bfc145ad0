"""What every domain's tables share: one declarative base, column types that behave alike on
MySQL and SQLite, and the clock they store."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Enum, Integer, MetaData
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names keep Alembic migrations identical on MySQL and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; MySQL gets a BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Microseconds on MySQL: leases, sweeps and cursors compare instants closer than a second.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> dt.datetime:
    """Naive UTC, the form every DateTime column stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def string_enum(enum_cls, name):
    """A string enum stored by value, checked by the database."""
    return Enum(enum_cls, name=name, values_callable=lambda e: [m.value for m in e],
                validate_strings=True, create_constraint=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
