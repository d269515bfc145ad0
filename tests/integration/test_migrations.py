"""Alembic creates, upgrades and downgrades the schema on MariaDB and on SQLite, and the
migrated schema matches the models."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from common.infra.orm import Base
from tests.support.stack import alembic_config, fresh_database, mysql_url

TABLES = {"users", "jobs", "usage_records"}


def _round_trip(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "head")
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        command.downgrade(config, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        command.upgrade(config, "head")  # and back up again after a full downgrade
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_upgrade_and_downgrade_on_mariadb(mysql_server):
    with fresh_database("bailian_migrate") as name:
        _round_trip(mysql_url(name))


def test_upgrade_and_downgrade_on_sqlite(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'migrate.db'}")


@pytest.mark.parametrize("step", ["0001", "0002", "0003", "0004", "0006", "0007", "0008", "0009",
                                  "0012", "0013"])
def test_each_revision_downgrades_cleanly(mysql_server, step):
    with fresh_database("bailian_step") as name:
        config = alembic_config(mysql_url(name))
        command.upgrade(config, step)
        command.downgrade(config, "-1")
        command.upgrade(config, "head")
