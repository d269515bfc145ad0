"""The engine and session factory shared by web and worker (SQLAlchemy 2.0 style).

Web opens one session per request, the worker one per task; both come from `Database.session()`
or from `Database.sessionmaker` directly.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from common.infra.metrics import DATABASE_QUERIES, sql_operation

# A pooled connection unused for longer than this is checked before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def tls_connect_args(mode: str = "disabled", ca: str | os.PathLike | None = None) -> dict:
    """PyMySQL's TLS options for a mysql-client style --ssl-mode.

    Left to itself, PyMySQL 1.2 tries TLS ("preferred") and builds a new SSL context, the
    system CA bundle included, for every connection: 0.8 MB and ~35 ms each (measured),
    whether or not the server speaks TLS. So TLS is a setting, never a guess, and one context
    serves every connection of the engine.
    """
    if mode == "disabled":
        return {"ssl_disabled": True}
    if mode == "preferred":
        return {}  # PyMySQL's own opportunistic mode, with its per-connection cost
    if mode == "required":  # encrypted, server not verified
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:  # verify_ca, verify_identity
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = mode == "verify_identity"
    return {"ssl": context}


def engine_options(url: str, *, pool_size: int = 10, connect_timeout: float = 5.0,
                   tls: dict | None = None) -> dict:
    """Driver and pool options that suit the backend behind `url`."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        # SQLite is the embedded default: several processes share one file, so wait for locks.
        return {"connect_args": {"check_same_thread": False, "timeout": 30}}
    options: dict[str, Any] = {
        # No pool_pre_ping: it costs a round trip on every checkout; see _ping_idle_connections.
        "pool_recycle": 1800,
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_timeout": connect_timeout,
    }
    if backend == "mysql":
        # Bounded waits everywhere: a hung server must turn into an error, not a hung worker.
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "read_timeout": 30,
            "write_timeout": 30,
            **(tls_connect_args() if tls is None else tls),
        }
        options["isolation_level"] = "READ COMMITTED"
        # Replaced by a reset that rolls back only when a transaction is open (see below).
        options["pool_reset_on_return"] = None
    return options


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling, paid only where it helps: a connection that sat in
    the pool for a while (where MySQL restarts and idle reaping strike) is pinged on checkout
    and replaced if dead; one handed back moments ago is not (pool_pre_ping would ping it
    too, a round trip per unit of work). A connection that dies in use fails its statement,
    and SQLAlchemy then invalidates the whole pool, as it would with pre-ping."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


def _roll_back_open_transactions_on_return(engine: Engine) -> None:
    """The pool's default reset rolls back every connection handed back, even one whose
    transaction was just committed: a wasted round trip per unit of work (a job has several).
    Track the transactions SQLAlchemy begins and ends on each connection, and roll back on
    return unless the last one was ended explicitly. Raw DBAPI use is never tracked, so it is
    always rolled back."""

    def unknown(_dbapi_connection, record, _proxy) -> None:
        record.info["in_transaction"] = True

    def opened(conn) -> None:
        conn.info["in_transaction"] = True

    def ended(conn) -> None:
        if not conn.invalidated:  # an invalidated connection is discarded, not reused
            conn.info["in_transaction"] = False

    event.listen(engine, "checkout", unknown)
    event.listen(engine, "begin", opened)
    event.listen(engine, "commit", ended)
    event.listen(engine, "rollback", ended)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection, record, reset_state) -> None:
        info = record.info if record is not None else {}
        if not reset_state.terminate_only and info.get("in_transaction", True):
            dbapi_connection.rollback()
            info["in_transaction"] = False


def _enable_sqlite_wal(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - sqlite only
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _count_query(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
    DATABASE_QUERIES.labels(sql_operation(statement)).inc()


class Database:
    """One engine plus its session factory."""

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 5.0,
                 tls: dict | None = None) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_options(
            url, pool_size=pool_size, connect_timeout=connect_timeout, tls=tls))
        if self.engine.dialect.name == "sqlite":
            _enable_sqlite_wal(self.engine)
        else:
            _ping_idle_connections(self.engine)
            _roll_back_open_transactions_on_return(self.engine)
        event.listen(self.engine, "before_cursor_execute", _count_query)
        # expire_on_commit=False: objects stay readable after the unit of work commits,
        # so views and tasks can serialise what they just wrote without another query.
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on error, always close."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """One transaction on a pooled connection (Core): committed when the block ends,
        rolled back if it raises."""
        return self.engine.begin()

    def connect(self) -> Connection:
        """A pooled connection for reads (Core); use it as a context manager."""
        return self.engine.connect()

    def dispose(self) -> None:
        """Drop pooled connections (after fork, and at shutdown)."""
        self.engine.dispose()


def database_from_settings(settings, *, pool_size: int | None = None) -> Database:
    return Database(
        settings.sqlalchemy_url,
        pool_size=max(settings.db_pool_size, pool_size or 0),
        connect_timeout=settings.db_connect_timeout,
        tls=tls_connect_args(settings.db_ssl_mode, settings.db_ssl_ca),
    )
