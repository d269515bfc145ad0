"""A production start with a placeholder or weak credential is refused before serving, with a
message naming the setting: the web server and the operators' CLI, as real processes."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.processes import BIN, REPO, free_port


def _production_env(tmp_path, **settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DB_", "DATABASE_", "ADMIN_", "FLOWER_"))}
    return {**env, "APP_ENV": "production", "JWT_SECRET_KEY": "p" * 48,
            "DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0", **settings}


REFUSED = [
    pytest.param({"ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": "change-me-too"},
                 "ADMIN_PASSWORD is a well-known placeholder", id="admin-placeholder"),
    pytest.param({"ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": "a"},
                 "ADMIN_PASSWORD is refused: an admin's password needs at least 12 characters",
                 id="admin-one-character"),
    pytest.param({"FLOWER_BASIC_AUTH": "operator:change-me-as-well"},
                 "FLOWER_BASIC_AUTH has a password (of 'operator') that is a well-known "
                 "placeholder", id="flower-placeholder"),
    pytest.param({"DB_HOST": "127.0.0.1", "DB_PASSWORD": "change-me"},
                 "DB_PASSWORD is a well-known placeholder", id="db-placeholder"),
    pytest.param({"DB_HOST": "127.0.0.1", "DB_PASSWORD": "short"},
                 "DB_PASSWORD is shorter than 16 characters", id="db-short"),
]


@pytest.mark.parametrize(("settings", "message"), REFUSED)
def test_gunicorn_refuses_to_start(tmp_path, settings, message):
    result = subprocess.run([str(BIN / "gunicorn"), "web.wsgi:app", "-b",
                             f"127.0.0.1:{free_port()}", "-w", "1"], cwd=REPO,
                            env=_production_env(tmp_path, **settings), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize(("settings", "message"), REFUSED[:1] + REFUSED[3:4])
def test_the_users_cli_refuses_to_start(tmp_path, settings, message):
    result = subprocess.run([str(BIN / "flask"), "--app", "web.wsgi", "users", "list"],
                            cwd=REPO, env=_production_env(tmp_path, **settings),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout, result.stderr[-3000:]
