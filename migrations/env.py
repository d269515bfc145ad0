"""Alembic environment: migrates whatever database the application settings point at."""

from __future__ import annotations

from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

from common.infra.db import tls_connect_args
from common.infra.settings import Settings
from common.schema import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def settings() -> Settings:
    return Settings(app_env="development")


def database_url() -> str:
    # An explicit URL (tests, tools) wins over the environment.
    return config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or \
        settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {}
    if make_url(url).get_backend_name() == "mysql":
        current = settings()
        connect_args = tls_connect_args(current.db_ssl_mode, current.db_ssl_ca)
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    with engine.connect() as connection:
        # render_as_batch lets the same migrations ALTER tables on SQLite.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
