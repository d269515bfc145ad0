"""The README's run command brings the whole platform up on the embedded default (SQLite, an
embedded real Redis, the emulator) and serves a chat end to end; a newcomer's next commands
(the users CLI, the smoke test, the load test) work beside it with no extra settings; SIGTERM
stops everything."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import pytest
import requests

from tests.support.jobs import wait_until
from tests.support.processes import REPO, free_port

pytestmark = pytest.mark.slow

CONFIGURED = ("DATABASE_URL", "DB_HOST", "REDIS_URL", "REDIS_HOST", "CELERY_BROKER_URL",
              "QWEN_API_KEY", "DASHSCOPE_API_KEY", "APP_ENV", "JWT_SECRET_KEY",
              "ADMIN_USERNAME", "ADMIN_PASSWORD", "DASHSCOPE_HTTP_BASE_URL")


def test_run_command_on_the_embedded_default(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURED}
    env.update({"DATA_DIR": str(tmp_path), "PORT": str(port)})
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(REPO / "scripts" / "run")], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            try:
                return requests.get(f"{base}/health/ready", timeout=2).status_code == 200
            except requests.RequestException:
                assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
                return False

        wait_until(ready, timeout=180, interval=0.5, message="platform never became ready")
        output = (tmp_path / "run.log").read_text()
        assert "OFFLINE MODE" in output
        assert (tmp_path / "bailian.db").exists()

        password = (tmp_path / "dev-admin-password").read_text().strip()
        login = requests.post(f"{base}/api/auth/login", timeout=10,
                              json={"username": "admin", "password": password})
        assert login.status_code == 200
        token = login.json()["data"]["access_token"]
        chat = requests.post(f"{base}/api/bailian/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"model": "qwen-turbo",
                                   "messages": [{"role": "user", "content": "offline hello"}]})
        assert chat.status_code == 200, chat.text
        assert chat.json()["data"]["choices"][0]["message"]["content"] == "Echo: offline hello"
        assert f"API docs (Swagger UI): {base}/api/docs" in output
        assert requests.get(f"{base}/api/docs/", timeout=10).status_code == 200

        _newcomer_commands(env, base, tmp_path)
    finally:
        _stop(proc)
    assert not (tmp_path / "run.env").exists(), "the run record outlived the run"
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "children outlived the platform"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, as an operator would; the platform must end within a minute."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _script(name: str, *args: str, env: dict[str, str], timeout: float = 120):
    return subprocess.run([str(REPO / "scripts" / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _newcomer_commands(env: dict[str, str], base: str, data_dir) -> None:
    """What the README tells a newcomer to run next, with nothing but DATA_DIR and PORT set."""
    password = secrets.token_urlsafe(16)
    created = _script("users", "create", "--username", "newbie", "--role", "premium",
                      env={**env, "NEW_USER_PASSWORD": password})
    assert created.returncode == 0, created.stderr[-2000:]
    listed = _script("users", "list", env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "newbie" in listed.stdout
    login = requests.post(f"{base}/api/auth/login", timeout=10,
                          json={"username": "newbie", "password": password})
    assert login.status_code == 200, login.text

    smoke = _script("smoke", env=env, timeout=300)
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-2000:]

    load = _script("load", "--headless", "--users", "2", "--spawn-rate", "2", "--run-time",
                   "3s", "--only-summary", env=env, timeout=300)
    assert load.returncode == 0, load.stdout[-2000:] + load.stderr[-2000:]
    assert "Aggregated" in load.stdout + load.stderr


def test_load_command_says_what_to_run_first(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURED}
    env.update({"DATA_DIR": str(tmp_path), "PORT": str(free_port())})
    load = _script("load", env=env)
    assert load.returncode == 2
    assert "start the platform first (scripts/run)" in load.stderr


def _children(pid: int) -> dict[int, str]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in out.splitlines()}


def _worker_pid(pid: int) -> int | None:
    """The threads worker (not the gevent streams worker)."""
    return next((child for child, args in _children(pid).items()
                 if "worker.celery_app worker -P threads" in args), None)


def test_a_child_that_dies_is_restarted_with_backoff_and_counted(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURED}
    env.update({"DATA_DIR": str(tmp_path), "PORT": str(port),
                "WORKER_METRICS_PORT": str(free_port())})
    log_path = tmp_path / "run.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(REPO / "scripts" / "run"), "--web-workers", "1",
                             "--worker-concurrency", "4"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: "bailian-backend is up" in log_path.read_text(), timeout=180,
                   interval=0.5, message="platform never came up")
        first = wait_until(lambda: _worker_pid(proc.pid), timeout=30,
                           message=str(_children(proc.pid)))
        web = {child for child, args in _children(proc.pid).items() if "gunicorn" in args}

        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "worker exited with -9; restarting it in 1s" in log_path.read_text(),
                   timeout=30, message=log_path.read_text()[-3000:])
        second = wait_until(lambda: _worker_pid(proc.pid) not in (None, first), timeout=30)
        assert second and proc.poll() is None  # the platform kept running
        assert {c for c, args in _children(proc.pid).items() if "gunicorn" in args} == web

        def counted():
            metrics = requests.get(f"{base}/metrics", timeout=5).text
            return 'platform_child_restarts_total{child="worker"} 1.0' in metrics
        wait_until(counted, timeout=10, message="the restart is not on /metrics")

        # The new worker consumes: a chat completes end to end.
        password = (tmp_path / "dev-admin-password").read_text().strip()
        token = requests.post(f"{base}/api/auth/login", timeout=10, json={
            "username": "admin", "password": password}).json()["data"]["access_token"]
        chat = requests.post(f"{base}/api/bailian/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"model": "qwen-turbo",
                                   "messages": [{"role": "user", "content": "again"}]})
        assert chat.status_code == 200, chat.text

        # A child that dies again at once waits twice as long.
        os.kill(_worker_pid(proc.pid), signal.SIGKILL)
        wait_until(lambda: "worker exited with -9; restarting it in 2s" in log_path.read_text(),
                   timeout=30, message=log_path.read_text()[-3000:])
    finally:
        _stop(proc)
