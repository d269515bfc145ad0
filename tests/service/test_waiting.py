"""A synchronous request waits on the job's wake-ups: every ending wakes it at once, those
decided by a claim included, and a wake-up that carries the job is answered without a read."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time

import pytest

from common.infra.orm import utcnow
from common.jobs.queue import RUN_CHAT
from tests.service.test_lifecycle import LEASE, backdate, chat_billed

URL = "/api/bailian/chat/completions"
BODY = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def waiting_client(service_settings):
    from web.app import create_app

    return create_app(service_settings).test_client()


def _submit_and_take(waiting_client, headers, broker, pool):
    """Start a waiting request; return it and its job id once its message is published."""
    future = pool.submit(waiting_client.post, URL, json=BODY,
                         headers={**headers, "Prefer": "wait=15"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = [m for m in broker.drain() if m.task == RUN_CHAT]
        if runs:
            return future, runs[0].args[0]
        time.sleep(0.005)
    raise AssertionError("the job was never published")


@pytest.mark.parametrize("ending, status, code", [("deadline", 504, "deadline_exceeded"),
                                                  ("attempts", 502, "attempts_exhausted")])
def test_a_claim_time_failure_answers_the_waiting_request_within_200_ms(
        waiting_client, accounts, service_lifecycle, database, broker, ending, status, code):
    _, headers = accounts.headers()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future, job_id = _submit_and_take(waiting_client, headers, broker, pool)
        if ending == "deadline":
            backdate(database, job_id, deadline_at=utcnow() - dt.timedelta(seconds=1))
        else:
            backdate(database, job_id, attempts=service_lifecycle.policy.max_attempts)
        assert service_lifecycle.claim(job_id, lease_seconds=LEASE) is None
        claimed = time.monotonic()
        response = future.result(timeout=10)
        answered_in = time.monotonic() - claimed
    assert response.status_code == status, response.json
    assert response.json["data"]["error"]["code"] == code
    assert answered_in < 0.2, f"answered {answered_in * 1000:.0f} ms after the claim"


def test_a_wake_up_that_carries_the_job_is_answered_without_reading_the_row(
        waiting_client, accounts, service_settings, database, broker):
    """The announced job wins over the row: the row still says queued, yet the request
    answers with what the wake-up carried."""
    from common.infra.redis_client import redis_from_settings
    from common.jobs import events, queries
    from common.jobs.models import JobStatus

    _, headers = accounts.headers()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future, job_id = _submit_and_take(waiting_client, headers, broker, pool)
        with database.connect() as conn:
            queued = queries.find(conn, job_id)
        billed = chat_billed(job_id)
        billed.result.choices[0].message.content = "from the wake-up"
        announced = queued.model_copy(update={"status": JobStatus.SUCCEEDED,
                                              "result": billed.result,
                                              "finished_at": utcnow()})
        events.announce(redis_from_settings(service_settings), job_id,
                        announced.model_dump_json())
        response = future.result(timeout=10)
    assert response.status_code == 200, response.json
    assert response.json["data"]["choices"][0]["message"]["content"] == "from the wake-up"
    with database.connect() as conn:
        assert queries.find(conn, job_id).status == JobStatus.QUEUED
