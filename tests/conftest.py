"""Shared fixtures: a fresh MariaDB database per run, real Redis, the emulator, the app.

Nothing here mocks the database, Redis or Celery. Under CI=true an unreachable MariaDB or
Redis fails the run instead of skipping the tests that need them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pymysql
import pytest
import redis as redis_lib
from alembic import command

from common.infra.settings import Settings
from tests.support import processes
from tests.support.stack import (
    EMULATOR_KEY,
    MYSQL_HOST,
    MYSQL_PASSWORD,
    MYSQL_PORT,
    MYSQL_USER,
    REDIS_HOST,
    REDIS_PORT,
    EmulatorClient,
    alembic_config,
    fresh_database,
    mysql_url,
    platform_env,
    redis_db,
)

# Separate logical databases for app state and the broker, flushed at the start of a run.
REDIS_APP_DB, REDIS_BROKER_DB = redis_db("app"), redis_db("broker")


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mysql_server():
    try:
        pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                        password=MYSQL_PASSWORD, connect_timeout=3).close()
    except pymysql.MySQLError as exc:
        _unavailable("MariaDB", exc)
    return MYSQL_HOST, MYSQL_PORT


@pytest.fixture(scope="session")
def database_url(mysql_server) -> Iterator[str]:
    with fresh_database() as name:
        url = mysql_url(name)
        command.upgrade(alembic_config(url), "head")
        yield url


@pytest.fixture(scope="session")
def redis_server():
    client = redis_lib.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=3)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        _unavailable("Redis", exc)
    for db in (REDIS_APP_DB, REDIS_BROKER_DB):
        redis_lib.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    return REDIS_HOST, REDIS_PORT


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_APP_DB}"


@pytest.fixture(scope="session")
def broker_url(redis_server) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_BROKER_DB}"


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def emulator(log_dir) -> Iterator[EmulatorClient]:
    port = processes.free_port()
    proc = processes.emulator({**os.environ, "EMULATOR_API_KEY": EMULATOR_KEY}, log_dir, port)
    yield EmulatorClient(port)
    proc.stop()


@pytest.fixture
def fresh_emulator(emulator) -> EmulatorClient:
    emulator.reset()
    return emulator


def settings_from_env(env: dict[str, str]) -> Settings:
    with mock.patch.dict(os.environ, env, clear=False):
        return Settings()


@pytest.fixture(scope="session")
def base_env(database_url, redis_url, broker_url, emulator) -> dict[str, str]:
    return platform_env(database_url=database_url, redis_url=redis_url, broker_url=broker_url,
                        emulator=emulator)


@pytest.fixture(scope="session")
def settings(base_env) -> Settings:
    return settings_from_env(base_env)


@pytest.fixture(scope="session")
def app(settings):
    from web.app import create_app

    flask_app = create_app(settings)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def database(settings):
    from common.infra.db import database_from_settings

    db = database_from_settings(settings)
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def lifecycle(settings, database):
    """The job lifecycle as the web tier runs it (its publishes go to the test broker)."""
    from common.infra.redis_client import redis_from_settings
    from common.jobs.lifecycle import JobLifecycle
    from common.jobs.queue import make_celery

    return JobLifecycle.of(settings=settings, database=database,
                           redis_client=redis_from_settings(settings),
                           celery=make_celery(settings))


class Accounts:
    """Creates users directly through the user service and logs them in over HTTP."""

    def __init__(self, database, client) -> None:
        self.database = database
        self.client = client

    def create(self, role: str = "default", password: str = "correct-horse-battery",
               active: bool = True) -> dict:
        from common.accounts import users
        from common.accounts.models import Role

        username = f"user_{uuid.uuid4().hex[:12]}"
        with self.database.session() as session:
            user = users.create_user(session=session, username=username, password=password,
                                     email=f"{username}@example.com", role=Role(role))
            user.is_active = active
        return {"id": user.id, "username": username, "password": password, "role": role}

    def login(self, account: dict) -> dict:
        response = self.client.post("/api/auth/login", json={
            "username": account["username"], "password": account["password"]})
        assert response.status_code == 200, response.json
        return response.json["data"]

    def headers(self, role: str = "default") -> tuple[dict, dict]:
        """A fresh user of `role` and its Authorization header."""
        account = self.create(role)
        token = self.login(account)["access_token"]
        return account, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def accounts(database, client) -> Accounts:
    return Accounts(database, client)
