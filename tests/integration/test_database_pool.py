"""The connection pool against the real MariaDB: dead idle connections are replaced before use,
and a connection goes back to the pool without a ROLLBACK unless a transaction is still open."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from common.infra.db import PING_AFTER_IDLE_SECONDS, Database


@pytest.fixture
def pool(database_url):
    """A one-connection pool, so every checkout hands back the same server connection."""
    db = Database(database_url, pool_size=1)
    yield db
    db.dispose()


def _connection_id(db: Database) -> int:
    with db.session() as session:
        return session.scalar(text("SELECT CONNECTION_ID()"))


def _kill(database, connection_id: int) -> None:
    with database.engine.connect() as admin:
        admin.execute(text(f"KILL CONNECTION {int(connection_id)}"))


def _rollbacks(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()[1])


def test_a_connection_that_died_while_idle_is_replaced_before_use(pool, database):
    first = _connection_id(pool)
    _kill(database, first)
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)

    assert _connection_id(pool) != first  # pinged on checkout, found dead, replaced


def test_a_connection_that_died_in_use_fails_once_and_the_pool_recovers(pool, database):
    first = _connection_id(pool)
    _kill(database, first)  # no idle time: handed out without a ping, like one dying mid-use

    with pytest.raises(OperationalError):
        _connection_id(pool)
    assert _connection_id(pool) != first


def test_no_rollback_on_return_after_a_commit(pool):
    before = _rollbacks(pool)
    with pool.session() as session:
        session.execute(text("SELECT 1"))  # committed by the unit of work
    assert _rollbacks(pool) == before


def test_an_open_transaction_is_rolled_back_on_return(pool, database):
    table = f"pool_probe_{time.monotonic_ns()}"
    with database.engine.begin() as ddl:
        ddl.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY)"))
    try:
        before = _rollbacks(pool)
        raw = pool.engine.raw_connection()
        raw.cursor().execute(f"INSERT INTO {table} VALUES (1)")  # noqa: S608 (our own name)
        raw.close()  # back to the pool mid-transaction
        assert _rollbacks(pool) == before + 1
        with database.engine.connect() as reader:
            assert reader.scalar(text(f"SELECT COUNT(*) FROM {table}")) == 0  # noqa: S608
    finally:
        with database.engine.begin() as ddl:
            ddl.execute(text(f"DROP TABLE {table}"))
