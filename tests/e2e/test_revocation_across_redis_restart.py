"""A logout outlives a restart of a Redis without persistence: gunicorn against a private Redis
that is shut down (nosave) and started again empty, the tokens presented over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import redis as redis_lib
import requests

from tests.support import processes

pytestmark = pytest.mark.slow


class PrivateRedis:
    """A redis-server of this test's own, so stopping it disturbs nobody."""

    def __init__(self, log_dir) -> None:
        self.port = processes.free_port()
        self.log_dir = log_dir
        self.proc: processes.Process | None = None

    def start(self) -> None:
        argv = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = processes.Process(f"redis-{self.port}", argv,
                                      {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                      self.log_dir).start()
        self.proc.wait_for_log("Ready to accept connections", timeout=20)

    def restart_empty(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False,
                       capture_output=True)
        self.proc.popen.wait(timeout=20)
        self.start()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


@pytest.fixture
def web_on_private_redis(base_env, log_dir):
    private = PrivateRedis(log_dir)
    private.start()
    port = processes.free_port()
    env = {**base_env, "REDIS_URL": f"redis://127.0.0.1:{private.port}/0",
           "CELERY_BROKER_URL": f"redis://127.0.0.1:{private.port}/1"}
    web = processes.gunicorn(env, log_dir, port, name="revocation-web", workers=2)
    try:
        yield f"http://127.0.0.1:{port}", private
    finally:
        web.stop()
        private.stop()


def test_logged_out_tokens_stay_401_after_redis_restarts_empty(web_on_private_redis, accounts):
    url, private = web_on_private_redis
    account = accounts.create()
    body = {"username": account["username"], "password": account["password"]}
    tokens = requests.post(f"{url}/api/auth/login", json=body, timeout=10).json()["data"]
    live = requests.post(f"{url}/api/auth/login", json=body, timeout=10).json()["data"]

    def status(method: str, path: str, token: str) -> int:
        return requests.request(method, f"{url}{path}", timeout=10,
                                headers={"Authorization": f"Bearer {token}"}).status_code

    assert status("POST", "/api/auth/logout", tokens["access_token"]) == 200
    assert status("GET", "/api/auth/me", tokens["access_token"]) == 401

    private.restart_empty()
    assert redis_lib.Redis(port=private.port).dbsize() == 0

    for _ in range(3):  # both gunicorn workers, whichever answers
        assert status("GET", "/api/auth/me", tokens["access_token"]) == 401
        assert status("POST", "/api/auth/refresh", tokens["refresh_token"]) == 401
        assert status("GET", "/api/auth/me", live["access_token"]) == 200
