"""TLS to MySQL is a setting (DB_SSL_MODE), never a per-connection guess, and every path that
connects (the pool, the readiness probe) honours it against the real MariaDB."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from common.infra.db import Database, database_from_settings, tls_connect_args


@pytest.fixture(scope="module")
def server_has_tls(database) -> bool:
    with database.session() as session:
        return session.execute(text("SHOW VARIABLES LIKE 'have_ssl'")).one()[1] == "YES"


def _cipher(db: Database) -> str:
    with db.session() as session:
        return session.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1]


def test_by_default_connections_are_plain_and_build_no_tls_context(settings):
    assert settings.db_ssl_mode == "disabled"
    db = database_from_settings(settings)
    try:
        with db.engine.connect() as connection:
            driver = connection.connection.dbapi_connection
            assert driver.ssl is False and not hasattr(driver, "ctx")
        assert _cipher(db) == ""
    finally:
        db.dispose()


def test_required_tls_never_falls_back_to_plain(database_url, server_has_tls):
    db = Database(database_url, tls=tls_connect_args("required"))
    try:
        if server_has_tls:
            assert _cipher(db) != ""
        else:
            with pytest.raises(OperationalError, match="SSL"):
                _cipher(db)
    finally:
        db.dispose()


def test_readiness_connects_the_way_the_settings_say(settings, server_has_tls, app, caplog):
    # `app` first: the first create_app of a run installs the JSON log handler in place of
    # the stream handlers on the root logger, caplog's among them.
    from web.app import create_app

    strict = create_app(settings.model_copy(update={"db_ssl_mode": "required"})).test_client()
    database = strict.get("/health/ready").json["checks"]["database"]
    if server_has_tls:
        assert database == "connected"
    else:
        # The public reason is short; why (the server offers no TLS) is in the log.
        assert database == "error: connection failed"
        assert "SSL" in caplog.text
