"""The engine and session factory shared by web and worker (SQLAlchemy 2.0 style).

Web opens one session per request, the worker one per task; both come from `Database.session()`
or from `Database.sessionmaker` directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from common.metrics import DATABASE_QUERIES, sql_operation


def engine_options(url: str, *, pool_size: int = 10, connect_timeout: float = 5.0) -> dict:
    """Driver and pool options that suit the backend behind `url`."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        # SQLite is the embedded default: several processes share one file, so wait for locks.
        return {"connect_args": {"check_same_thread": False, "timeout": 30}}
    options: dict[str, Any] = {
        "pool_pre_ping": True,  # survive MySQL restarts and idle-connection reaping
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
        }
        options["isolation_level"] = "READ COMMITTED"
    return options


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

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.engine = create_engine(
            url, **engine_options(url, pool_size=pool_size, connect_timeout=connect_timeout)
        )
        if self.engine.dialect.name == "sqlite":
            _enable_sqlite_wal(self.engine)
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

    def dispose(self) -> None:
        """Drop pooled connections (after fork, and at shutdown)."""
        self.engine.dispose()


def database_from_settings(settings) -> Database:
    return Database(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout,
    )
