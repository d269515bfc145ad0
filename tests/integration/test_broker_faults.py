"""Broker faults on both supported brokers (Redis, the default, and RabbitMQ): a broker restart
with tasks in flight, a worker killed mid-call, a burst, countdown polls, and the worker's
health check. A real threads-pool worker and beat run against a private broker server (one per
broker, shared by the module's tests) that the tests stop and start."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess

import pytest

from common.jobs.models import JobStatus
from tests.conftest import Accounts, settings_from_env
from tests.support import brokers, processes
from tests.support.jobs import directive, usage_rows, wait_for_job, wait_until

URL = "/api/bailian/chat/completions"
ASYNC = {"Prefer": "respond-async"}
IN_FLIGHT = 20
HEALTH_MAX_AGE = 3


@dataclasses.dataclass
class Stack:
    server: brokers.PrivateRedis | brokers.PrivateRabbit
    env: dict[str, str]
    worker: processes.Process
    client: object
    log_dir: object

    def restart_worker(self) -> None:
        self.worker = processes.worker(self.env, self.log_dir, name=self.worker.name,
                                       concurrency=IN_FLIGHT + 4)


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def stack(request, base_env, log_dir, tmp_path_factory, emulator):
    from web.app import create_app

    if request.param == "redis":
        server = brokers.PrivateRedis(tmp_path_factory.mktemp("broker-redis"))
        # As in a deployment: one Redis is the broker and the app's store, so its outage
        # takes both away.
        overrides = {"REDIS_URL": server.url(0), "CELERY_BROKER_URL": server.url(1)}
    else:
        if not brokers.PrivateRabbit.available():
            if os.environ.get("CI") == "true":
                pytest.fail("rabbitmq-server is not installed", pytrace=False)
            pytest.skip("rabbitmq-server is not installed")
        server = brokers.PrivateRabbit()
        overrides = {"CELERY_BROKER_URL": server.url()}
    server.start()
    health_file = log_dir / f"consuming-{request.param}"
    env = {**base_env, **overrides, "WORKER_HEALTH_FILE": str(health_file),
           "WORKER_HEALTH_MAX_AGE_SECONDS": str(HEALTH_MAX_AGE)}
    worker = processes.worker(env, log_dir, name=f"worker-{request.param}",
                              concurrency=IN_FLIGHT + 4)
    beat = processes.beat(env, log_dir)
    client = create_app(settings_from_env(env)).test_client()
    running = Stack(server, env, worker, client, log_dir)
    yield running
    running.worker.stop()  # the one running now: a test may have replaced the first
    beat.stop()
    if isinstance(server, brokers.PrivateRabbit):
        server.remove()
    else:
        server.stop()


@pytest.fixture
def submit(stack, database):
    accounts = Accounts(database, stack.client)
    _, headers = accounts.headers()

    def submit_chat(content: str) -> str:
        response = stack.client.post(URL, json={"model": "qwen-plus", "messages": [
            {"role": "user", "content": content}]}, headers={**headers, **ASYNC})
        assert response.status_code == 202, response.json
        return response.json["data"]["id"]

    return submit_chat


def _terminal(database, job_id) -> bool:
    from common.jobs.models import Job

    with database.session() as session:
        return session.get(Job, job_id).status.is_terminal


def assert_each_once(database, job_ids) -> None:
    for job_id in job_ids:
        job = wait_for_job(database, job_id, timeout=120)
        assert job.status == JobStatus.SUCCEEDED, (job_id, job.status, job.error_code)
        assert len(usage_rows(database, job_id)) == 1, job_id


def test_broker_restart_with_tasks_in_flight_keeps_the_worker_and_every_job(
        stack, submit, database, emulator):
    marker = directive(latency_ms=3000)
    job_ids = [submit(f"in flight {i} {marker}") for i in range(IN_FLIGHT)]
    wait_until(lambda: emulator.calls_with(marker.id) >= IN_FLIGHT, timeout=30,
               message="not every job reached the upstream call")
    offset = len(stack.worker.log())

    stack.server.stop()  # the upstream calls return into a worker without a broker
    wait_until(lambda: all(_terminal(database, job_id) for job_id in job_ids), timeout=60,
               message="the jobs did not finish while the broker was down")
    stack.server.start()

    # The consumer reconnects (Celery logs the new broker connection) and the process lives.
    stack.worker.wait_for_log("Connected to", timeout=60, offset=offset)
    assert stack.worker.popen.poll() is None, stack.worker.log()[-4000:]
    assert "Unrecoverable error" not in stack.worker.log()[offset:]
    assert_each_once(database, job_ids)
    assert emulator.calls_with(marker.id) == IN_FLIGHT  # none ran twice upstream
    # ... and it consumes again.
    after = submit(f"after the restart {directive()}")
    assert_each_once(database, [after])
    assert stack.worker.popen.poll() is None


def test_worker_killed_mid_call_completes_the_job_exactly_once(stack, submit, database,
                                                               emulator):
    marker = directive(latency_ms=3000)
    job_id = submit(f"survive {marker}")
    wait_until(lambda: emulator.calls_with(marker.id) == 1, timeout=20,
               message="the upstream call never started")
    stack.worker.kill(signal.SIGKILL)
    stack.restart_worker()
    assert_each_once(database, [job_id])
    assert wait_for_job(database, job_id).attempts == 2
    assert emulator.calls_with(marker.id) == 2


def test_a_burst_of_200_jobs_ends_each_exactly_once(stack, submit, database, emulator):
    marker = directive()
    job_ids = [submit(f"burst {i} {marker}") for i in range(200)]
    assert_each_once(database, job_ids)
    assert emulator.calls_with(marker.id) == 200


def test_an_image_job_polled_by_countdowns_finishes(stack, database, emulator):
    """The Wanx poll is re-armed with a countdown: on RabbitMQ it waits in the broker's delay
    queues (native delayed delivery on quorum queues), on Redis in the worker."""
    accounts = Accounts(database, stack.client)
    _, headers = accounts.headers()
    response = stack.client.post("/api/bailian/generation", headers={**headers, **ASYNC}, json={
        "model": "wanx-v1", "prompt": f"a lighthouse {directive(duration_s=3)}",
        "parameters": {}})
    assert response.status_code == 202, response.json
    job = wait_for_job(database, response.json["data"]["id"], timeout=60)
    assert job.status == JobStatus.SUCCEEDED, job.error_code
    assert job.polls >= 2  # at least one poll came back by countdown
    assert len(usage_rows(database, job.id)) == 1
    if isinstance(stack.server, brokers.PrivateRabbit):
        queues = dict(line.split("\t") for line in stack.server.ctl(
            "list_queues", "name", "type", "--quiet", "--no-table-headers").stdout.splitlines())
        assert {queues[name] for name in ("chat", "images", "maintenance")} == {"quorum"}
        assert queues["celery_delayed_0"] == "quorum"


def health_check(stack) -> subprocess.CompletedProcess:
    """The compose and Kubernetes probe, run as they run it."""
    return subprocess.run([str(processes.BIN / "python"), "-m", "worker.health"],
                          cwd=processes.REPO, env=stack.env, capture_output=True, text=True,
                          timeout=30)


def test_the_health_check_fails_while_the_worker_cannot_consume_and_recovers(stack):
    assert health_check(stack).returncode == 0
    stack.server.stop()
    try:
        failed = wait_until(lambda: (r := health_check(stack)).returncode == 1 and r,
                            timeout=HEALTH_MAX_AGE * 10, message="still healthy without broker")
        assert "not consuming for" in failed.stderr
        assert stack.worker.popen.poll() is None  # alive, and the check says it is useless
    finally:
        stack.server.start()
    wait_until(lambda: health_check(stack).returncode == 0, timeout=60,
               message="the check never recovered with the broker")

    # A worker whose loop is stuck (here: stopped) is noticed too.
    os.kill(stack.worker.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: health_check(stack).returncode == 1, timeout=HEALTH_MAX_AGE * 10,
                   message="a frozen worker still looks healthy")
    finally:
        os.kill(stack.worker.pid, signal.SIGCONT)
    wait_until(lambda: health_check(stack).returncode == 0, timeout=30)
