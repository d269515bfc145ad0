"""The run record: Settings reads it only while the run command that wrote it is alive, and
only for what nothing else set."""

from __future__ import annotations

import subprocess
import sys

from common.infra import embedded_run
from common.infra.settings import Settings


def _settings(monkeypatch, data_dir, **env):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    for key in ("REDIS_URL", "REDIS_HOST", "CELERY_BROKER_URL", "APP_ENV"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_a_live_record_fills_what_is_unset(tmp_path, monkeypatch):
    embedded_run.write(tmp_path, {"REDIS_URL": "redis://127.0.0.1:6499/0",
                                  "APP_ENV": "development"})
    settings = _settings(monkeypatch, tmp_path)
    assert settings.app_env == "development"
    assert settings.redis_connection_url == "redis://127.0.0.1:6499/0"


def test_the_environment_wins_over_the_record(tmp_path, monkeypatch):
    embedded_run.write(tmp_path, {"REDIS_URL": "redis://127.0.0.1:6499/0",
                                  "APP_ENV": "development"})
    settings = _settings(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6500/3")
    assert settings.redis_connection_url == "redis://127.0.0.1:6500/3"


def test_a_record_left_by_a_dead_run_is_ignored(tmp_path, monkeypatch):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    embedded_run.path_in(tmp_path).write_text(
        f"{embedded_run.PID_KEY}={dead.stdout.strip()}\nREDIS_URL='redis://127.0.0.1:6499/0'\n")
    assert embedded_run.live_owner(tmp_path) is None
    settings = _settings(monkeypatch, tmp_path, APP_ENV="development")
    assert not settings.redis_configured


def test_the_record_is_private(tmp_path):
    path = embedded_run.write(tmp_path, {"APP_ENV": "development"})
    assert path.stat().st_mode & 0o077 == 0
