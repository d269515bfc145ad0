"""The web serving model (gunicorn.conf.py: gevent): one gunicorn of two processes holds
hundreds of requests open at once, far beyond the 32 its former 2 x 16 threads could, and
still answers a small request promptly meanwhile."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from common.jobs.models import Job
from tests.support import processes

pytestmark = pytest.mark.slow
HELD = 320  # ten times what 2 processes x 16 threads held
GENEROUS = 10.0  # seconds: a bound for "answered promptly" that only a stuck server misses


def _jobs_of(database, user_id: int) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Job)
                              .where(Job.user_id == user_id))


def _await(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_one_instance_holds_hundreds_of_sync_requests_and_still_answers_small_ones(
        base_env, log_dir, accounts, database, emulator):
    # No worker yet: every sync chat waits for its job, as behind a slow upstream answer.
    env = {**base_env, "SYNC_WAIT_SECONDS": "120", "LOG_LEVEL": "WARNING"}
    port = processes.free_port()
    web = processes.gunicorn(env, log_dir, port, name="serving-web", workers=2)
    base = f"http://127.0.0.1:{port}"
    account, headers = accounts.headers("admin")
    answered = threading.Event()
    worker = None

    def chat(index: int) -> int:
        response = requests.post(
            f"{base}/api/bailian/chat/completions", headers=headers, timeout=180,
            json={"model": "qwen-turbo", "messages": [{"role": "user",
                                                       "content": f"held {index}"}]})
        answered.set()
        return response.status_code

    pool = concurrent.futures.ThreadPoolExecutor(HELD)
    try:
        held = [pool.submit(chat, i) for i in range(HELD)]
        # Every request is inside the application (it created its job) and none has its answer.
        _await(lambda: _jobs_of(database, account["id"]) == HELD, 90,
               f"only {_jobs_of(database, account['id'])} of {HELD} requests got in")
        assert not answered.is_set()

        for path in ("/health", "/api/auth/me"):
            started = time.monotonic()
            response = requests.get(f"{base}{path}", headers=headers, timeout=GENEROUS)
            assert response.status_code == 200, (path, response.text)
            assert time.monotonic() - started < GENEROUS, path
        assert not answered.is_set()

        # Now the jobs run, and each held request is answered with its result.
        worker = processes.worker(env, log_dir, name="serving-worker", concurrency=16)
        statuses = [future.result(timeout=150) for future in held]
        assert statuses == [200] * HELD
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if worker is not None:
            worker.stop()
        web.stop()
    assert '"level": "ERROR"' not in web.log(), web.log()[-3000:]
