"""The pieces of a local platform stack shared by the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pymysql
import requests
from alembic.config import Config as AlembicConfig

REPO = Path(__file__).resolve().parents[2]
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("TEST_MYSQL_PASSWORD", "")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
EMULATOR_KEY = "sk-emulator-test-key"
# The suite's Redis databases: seven in a row from TEST_REDIS_FIRST_DB (default 7, i.e. 7-13),
# so a second run can go beside the first on another range (TEST_REDIS_FIRST_DB=0: 0-6). Each
# is flushed by the tests that use it.
FIRST_REDIS_DB = int(os.environ.get("TEST_REDIS_FIRST_DB", "7"))
_REDIS_ROLES = ("compose_app", "compose_broker", "conformance_broker", "observability_broker",
                "app", "broker", "service_broker")


def redis_db(role: str) -> int:
    """The Redis database number of one role in the suite (see FIRST_REDIS_DB)."""
    return FIRST_REDIS_DB + _REDIS_ROLES.index(role)


def mysql_url(database: str, host: str = MYSQL_HOST, port: int = MYSQL_PORT) -> str:
    return f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{host}:{port}/{database}?charset=utf8mb4"


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig(str(REPO / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


@contextlib.contextmanager
def fresh_database(prefix: str = "bailian_test") -> Iterator[str]:
    """Create an empty MariaDB database, yield its name, drop it afterwards."""
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

    def tasks(self) -> dict[str, dict]:
        tasks = requests.get(f"{self.base}/_emulator/tasks", timeout=10).json()["tasks"]
        return {task["task_id"]: task for task in tasks}

    def uploads(self) -> list[dict]:
        """Files uploaded through the temporary file upload: key, model, size, sha256."""
        return requests.get(f"{self.base}/_emulator/uploads", timeout=5).json()["objects"]

    def calls(self, endpoint: str = "generation") -> int:
        return self.stats()["requests"].get(endpoint, 0)

    def calls_with(self, marker: str, endpoint: str = "generation") -> int:
        """Requests that carried a directive containing `marker` (e.g. a test's unique id)."""
        return sum(1 for entry in self.stats()["log"]
                   if entry["endpoint"] == endpoint and marker in (entry["directive"] or ""))


def platform_env(*, database_url: str, redis_url: str, broker_url: str,
                 emulator: EmulatorClient | None, **overrides) -> dict[str, str]:
    """The environment of a platform process in tests: production mode, real services."""
    env = {
        **os.environ,
        "APP_ENV": "production",
        "JWT_SECRET_KEY": "test-" + "k" * 40,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url,
        "LOG_LEVEL": "INFO",
        "DATA_DIR": str(REPO / "var" / "test"),
        "SYNC_WAIT_SECONDS": "20",
        "UPSTREAM_TIMEOUT_SECONDS": "5",
        "FC_TIMEOUT_SECONDS": "5",
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
        # Every test logs in from 127.0.0.1 and some submit hundreds of jobs; the tests of the
        # limits themselves set their own.
        "LOGIN_RATE_LIMIT": "100000/minute",
        "RATE_LIMITS": json.dumps({endpoint: {tier: "100000/minute" for tier in
                                              ("default", "premium", "admin")}
                                   for endpoint in ("chat", "generation", "embeddings", "video")}),
        "TPM_LIMITS": json.dumps({tier: 10**9 for tier in ("default", "premium", "admin")}),
        # Generous limits for most image tests; one model keeps DashScope's tight ones.
        "IMAGE_MODELS": json.dumps({
            "wanx-v1": {"submit_qps": 100, "concurrency": 0},
            "wanx2.1-t2i-turbo": {"submit_qps": 100, "concurrency": 0},
            "wanx2.0-t2i-turbo": {"submit_qps": 2, "concurrency": 1},
            **{model: {"submit_qps": 100, "concurrency": 0} for model in (
                "wan2.2-t2i-flash", "wan2.2-t2i-plus", "wan2.5-t2i-preview")}}),
        "IMAGE_EDIT_MODELS": json.dumps({"wanx2.1-imageedit": {"submit_qps": 100,
                                                              "concurrency": 0}}),
        "VIDEO_MODELS": json.dumps({model: {"submit_qps": 100, "concurrency": 0} for model in (
            "wan2.2-t2v-plus", "wan2.5-t2v-preview", "wan2.2-i2v-flash", "wanx2.1-kf2v-plus")}),
        # Videos in tests take seconds, not minutes: the same schedule, shorter.
        "VIDEO_POLL_BACKOFF": json.dumps([1.0, 2.0, 3.0]),
        "IMAGE_JOB_DEADLINE_SECONDS": "180",
        "IMAGE_POLL_MAX_INTERVAL": "60",
        "IMAGE_DOWNLOAD_HOSTS": json.dumps(["127.0.0.1"]),
        "IMAGE_STORAGE_DIR": str(REPO / "var" / "test" / "images"),
        "NO_PROXY": "127.0.0.1,localhost",
        # Webhook receivers in the tests listen on localhost (plain http), and retries come
        # within seconds.
        "WEBHOOK_ALLOW_HOSTS": json.dumps(["localhost"]),
        "WEBHOOK_TIMEOUT_SECONDS": "3",
        "WEBHOOK_RETRY_SCHEDULE": json.dumps([0.3, 0.5, 0.8]),
    }
    if emulator is not None:
        env["QWEN_API_KEY"] = EMULATOR_KEY
        env["DASHSCOPE_HTTP_BASE_URL"] = emulator.api_base
    env.update({k: str(v) for k, v in overrides.items()})
    return env
