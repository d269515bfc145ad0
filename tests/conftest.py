"""Shared fixtures: a fresh MariaDB database per run, real Redis, the emulator, the app.

Nothing here mocks the database, Redis or Celery. Under CI=true an unreachable MariaDB or
Redis fails the run instead of skipping the tests that need them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pymysql
import pytest
import redis as redis_lib
import requests
from alembic import command
from alembic.config import Config as AlembicConfig

from common.settings import Settings
from tests.support import processes

REPO = Path(__file__).resolve().parent.parent
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("TEST_MYSQL_PASSWORD", "")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
# Separate logical databases for app state and the broker, flushed at the start of a run.
REDIS_APP_DB, REDIS_BROKER_DB = 11, 12
EMULATOR_KEY = "sk-emulator-test-key"


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def mysql_url(database: str, host: str = MYSQL_HOST, port: int = MYSQL_PORT) -> str:
    return f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{host}:{port}/{database}?charset=utf8mb4"


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig(str(REPO / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def mysql_server():
    try:
        pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                        password=MYSQL_PASSWORD, connect_timeout=3).close()
    except pymysql.MySQLError as exc:
        _unavailable("MariaDB", exc)
    return MYSQL_HOST, MYSQL_PORT


@contextlib.contextmanager
def fresh_database(prefix: str = "bailian_test") -> Iterator[str]:
    """Create an empty database, yield its name, drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    connection = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                                 password=MYSQL_PASSWORD, autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


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


class EmulatorClient:
    """Talks to a running emulator's admin surface."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.api_base = f"{self.base}/api/v1"

    def stats(self) -> dict:
        return requests.get(f"{self.base}/_emulator/stats", timeout=5).json()

    def reset(self) -> None:
        requests.post(f"{self.base}/_emulator/reset", timeout=5).raise_for_status()

    def configure(self, **changes) -> dict:
        response = requests.post(f"{self.base}/_emulator/config", json=changes, timeout=5)
        response.raise_for_status()
        return response.json()

    def calls(self, endpoint: str = "generation") -> int:
        return self.stats()["requests"].get(endpoint, 0)

    def calls_with(self, marker: str, endpoint: str = "generation") -> int:
        """Requests that carried a directive containing `marker` (e.g. a test's unique id)."""
        return sum(1 for entry in self.stats()["log"]
                   if entry["endpoint"] == endpoint and marker in (entry["directive"] or ""))


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


def platform_env(*, database_url: str, redis_url: str, broker_url: str,
                 emulator: EmulatorClient | None, **overrides) -> dict[str, str]:
    """The environment of a platform process in tests: production mode, real services."""
    env = {
        "APP_ENV": "production",
        "JWT_SECRET_KEY": "test-" + "k" * 40,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url,
        "LOG_LEVEL": "INFO",
        "DATA_DIR": str(REPO / "var" / "test"),
        "SYNC_WAIT_SECONDS": "20",
        "UPSTREAM_TIMEOUT_SECONDS": "5",
        "UPSTREAM_RETRY_BASE_SECONDS": "0.2",
        "UPSTREAM_RETRY_MAX_SECONDS": "2",
        "JOB_LEASE_SECONDS": "8",
        "JOB_DEADLINE_SECONDS": "120",
        "SWEEPER_INTERVAL_SECONDS": "1",
        "SWEEPER_GRACE_SECONDS": "1",
        "REPUBLISH_QUEUED_AFTER_SECONDS": "30",
        "BROKER_VISIBILITY_TIMEOUT": "120",
        "TASK_TIME_LIMIT": "60",
        "WORKER_SOFT_SHUTDOWN_SECONDS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if emulator is not None:
        env["QWEN_API_KEY"] = EMULATOR_KEY
        env["DASHSCOPE_HTTP_BASE_URL"] = emulator.api_base
    env.update({k: str(v) for k, v in overrides.items()})
    return env


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
    from common.db import database_from_settings

    db = database_from_settings(settings)
    yield db
    db.dispose()


class Accounts:
    """Creates users directly through the user service and logs them in over HTTP."""

    def __init__(self, database, client) -> None:
        self.database = database
        self.client = client

    def create(self, role: str = "default", password: str = "correct-horse-battery",
               active: bool = True) -> dict:
        from common import users
        from common.models import Role

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
