"""At-least-once delivery, end to end: duplicated, redelivered and lost messages reach a real
worker and sweeper, and each guard holds. Every test here fails if its guard is removed."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import redis as redis_lib

from common.infra.orm import utcnow
from common.jobs import transitions
from common.jobs.chat import STASH_KEY, StashedResult
from common.jobs.lifecycle import Claim
from common.jobs.models import Job, JobKind, JobStatus
from common.jobs.queue import POLL_IMAGE, RUN_CHAT, Step
from tests.service.test_lifecycle import chat_billed
from tests.support.jobs import directive, usage_rows, wait_for_job, wait_until

pytestmark = pytest.mark.usefixtures("platform")
CHAT = "/api/bailian/chat/completions"
ASYNC = {"Prefer": "respond-async"}


def chat(content: str) -> dict:
    return {"model": "qwen-turbo", "messages": [{"role": "user", "content": content}]}


def test_a_second_delivery_during_the_first_attempt_makes_no_second_upstream_call(
        client, accounts, database, emulator, lifecycle):
    _, headers = accounts.headers()
    marker = directive(latency_ms=2500)
    job_id = client.post(CHAT, json=chat(f"once {marker}"),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    wait_until(lambda: emulator.calls_with(marker.id) == 1, timeout=20,
               message="the upstream call never started")
    for _ in range(3):  # e.g. a visibility timeout or a restored unacked message
        lifecycle.effects.follow_up(Step(RUN_CHAT, job_id))
    job = wait_for_job(database, job_id, timeout=30)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert emulator.calls_with(marker.id) == 1
    assert len(usage_rows(database, job_id)) == 1


def test_a_kept_result_of_a_job_recorded_after_all_is_dropped_without_error(
        client, accounts, database, settings, lifecycle, platform):
    """The database committed the result but the worker never heard so (the connection died
    with the commit's answer): it kept the result in Redis too. The redelivered message finds
    the job recorded, and drops the kept copy instead of failing on the usage row."""
    _, headers = accounts.headers()
    done = client.post(CHAT, json=chat(f"recorded {directive()}"), headers=headers)
    job_id = done.json["data"]["job_id"]
    with database.connect() as conn:
        claim = Claim.of(transitions.claimed(conn, job_id))
    kept = redis_lib.Redis.from_url(settings.redis_connection_url)
    key = STASH_KEY.format(job_id)
    kept.set(key, StashedResult(claim=claim, billed=chat_billed(job_id)).model_dump_json())
    lifecycle.effects.follow_up(Step(RUN_CHAT, job_id))
    wait_until(lambda: not kept.exists(key), timeout=20,
               message="the kept result was never dropped")
    assert len(usage_rows(database, job_id)) == 1
    assert "IntegrityError" not in platform.worker.log()


def test_a_job_whose_message_was_published_and_then_lost_is_run(accounts, database,
                                                                emulator, settings):
    """The broker lost a message it had accepted: only the row knows. The sweeper publishes
    it again once REPUBLISH_QUEUED_AFTER_SECONDS has passed since the publish."""
    account = accounts.create()
    marker = directive()
    job_id = str(uuid.uuid4())
    long_ago = utcnow() - dt.timedelta(seconds=settings.republish_queued_after_seconds + 5)
    with database.transaction() as conn:
        transitions.insert_job(conn, {
            "id": job_id, "user_id": account["id"], "kind": JobKind.CHAT,
            "model": "qwen-turbo", "status": JobStatus.QUEUED, "attempts": 0, "polls": 0,
            "request": {"messages": [{"role": "user", "content": f"lost {marker}"}],
                        "parameters": {}},
            "request_fingerprint": "0" * 64, "created_at": long_ago, "updated_at": long_ago,
            "enqueued_at": long_ago, "path": "dashscope", "compute_cost": Decimal(0),
            "deadline_at": utcnow() + dt.timedelta(seconds=120)})
    job = wait_for_job(database, job_id, timeout=30)
    assert job.status == JobStatus.SUCCEEDED
    assert emulator.calls_with(marker.id) == 1


def test_a_duplicated_poll_message_starts_no_second_polling_chain(client, accounts, database,
                                                                  lifecycle):
    _, headers = accounts.headers()
    job_id = client.post("/api/bailian/generation", headers={**headers, **ASYNC}, json={
        "model": "wanx-v1", "prompt": f"a slow fox {directive(duration_s=6)}",
        "parameters": {"n": 1}}).json["data"]["id"]

    def polled() -> int:
        with database.session() as session:
            return session.get(Job, job_id).polls

    wait_until(lambda: polled() >= 1, timeout=20, message="the task was never polled")
    for _ in range(3):  # copies of the first poll's message, redelivered
        lifecycle.effects.follow_up(Step(POLL_IMAGE, job_id, polls=0))
    job = wait_for_job(database, job_id, timeout=60)
    assert job.status == JobStatus.SUCCEEDED
    # One chain polls at about 1, 3 and 8 s (backoff 1, 2, 5 s) for a 6-second task; every
    # duplicate that got through would have started a chain of its own.
    assert job.polls <= 4
