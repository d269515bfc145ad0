"""Statements run on the driver's cursor behave as through Core: on MariaDB and SQLite alike,
values and rows keep their types, driver errors come out as SQLAlchemy's, a lost connection is
invalidated and the next transaction gets a live one."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
from decimal import Decimal

import pymysql
import pytest
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Enum,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from common.infra.db import Database
from common.infra.statements import FastStatement
from tests.support.stack import (
    MYSQL_HOST,
    MYSQL_PASSWORD,
    MYSQL_PORT,
    MYSQL_USER,
    fresh_database,
    mysql_url,
)


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


metadata = MetaData()
things = Table("fast_things", metadata,
               Column("id", Integer, primary_key=True, autoincrement=False),
               Column("name", String(32), unique=True),
               Column("colour", Enum(Colour, values_callable=lambda e: [m.value for m in e])),
               Column("payload", JSON), Column("price", Numeric(18, 8)),
               Column("at", DateTime), Column("count", Integer, default=0))

INSERT = FastStatement(insert(things))
READ = FastStatement(select(things.c.name, things.c.colour, things.c.payload, things.c.price,
                            things.c.at, things.c.count).where(things.c.id == bindparam("p_id")))
RECOLOUR = FastStatement(update(things).where(things.c.colour == Colour.RED,
                                              things.c.id == bindparam("p_id"))
                         .values(colour=Colour.BLUE, count=things.c.count + 1))
ROW = {"id": 1, "name": "one", "colour": Colour.RED, "payload": {"a": [1, "two"]},
       "price": Decimal("0.00012345"), "at": dt.datetime(2026, 12, 1, 10, 30, 1), "count": 3}


@pytest.fixture(params=["mariadb", "sqlite"])
def table(request, mysql_server, tmp_path):
    """A database with the table, on each backend the platform runs on."""
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'fast.db'}" if request.param == "sqlite" \
            else mysql_url(stack.enter_context(fresh_database("bailian_fast")))
        database = Database(url)
        stack.callback(database.dispose)
        metadata.create_all(database.engine)
        yield database


def test_values_and_rows_keep_their_types(table):
    with table.transaction() as conn:
        INSERT.execute(conn, ROW)
    with table.connect() as conn:
        fast = READ.execute(conn, {"p_id": 1}).one()
        core = conn.execute(select(*READ.statement.selected_columns)
                            .where(things.c.id == 1)).one()
    assert fast._asdict() == core._asdict() == {k: v for k, v in ROW.items() if k != "id"}
    assert isinstance(fast.colour, Colour) and isinstance(fast.price, Decimal)


def test_an_update_counts_the_rows_it_matched_and_binds_its_literals(table):
    with table.transaction() as conn:
        INSERT.execute(conn, ROW)
    with table.transaction() as conn:
        assert RECOLOUR.execute(conn, {"p_id": 1}).rowcount == 1
        assert RECOLOUR.execute(conn, {"p_id": 1}).rowcount == 0  # no longer red
    with table.connect() as conn:
        row = READ.execute(conn, {"p_id": 1}).one()
    assert (row.colour, row.count) == (Colour.BLUE, 4)


def test_a_constraint_violation_is_sqlalchemys_integrity_error_and_rolls_back(table):
    with table.transaction() as conn:
        INSERT.execute(conn, ROW)
    with pytest.raises(IntegrityError), table.transaction() as conn:
        INSERT.execute(conn, {**ROW, "id": 2, "name": "two"})
        INSERT.execute(conn, {**ROW, "id": 3})  # the same name again
    with table.connect() as conn:
        assert READ.execute(conn, {"p_id": 2}).one_or_none() is None  # nothing half-written


def test_a_column_with_a_python_default_must_be_given():
    with pytest.raises(ValueError, match="count"), Database("sqlite://").connect() as conn:
        INSERT.execute(conn, {k: v for k, v in ROW.items() if k != "count"})


def test_a_lost_connection_is_an_operational_error_and_the_next_transaction_works(mysql_server):
    with fresh_database("bailian_fast") as name:
        database = Database(mysql_url(name), pool_size=1)
        metadata.create_all(database.engine)
        with database.transaction() as conn:
            INSERT.execute(conn, ROW)
            thread_id = conn.connection.dbapi_connection.thread_id()
        admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                                password=MYSQL_PASSWORD, autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"KILL CONNECTION {int(thread_id)}")
        admin.close()
        # Handed back moments ago, the connection is not pinged: the statement finds it dead.
        with pytest.raises(OperationalError) as raised, database.connect() as conn:
            READ.execute(conn, {"p_id": 1})
        assert raised.value.connection_invalidated
        with database.connect() as conn:
            assert READ.execute(conn, {"p_id": 1}).one().name == "one"
        database.dispose()
