"""Every transition of the job lifecycle, including the conflicting ones, against the real
MariaDB: who wins, what is written, and which side effects follow (wake-ups, published steps,
metrics). No worker process: the tests call the use cases a worker or a view would call."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from common.billing.models import UsageRecord
from common.billing.pricing import Usage
from common.errors import Conflict, NotFound
from common.infra.orm import utcnow
from common.jobs import queries, transitions
from common.jobs.lifecycle import Billed
from common.jobs.models import Job, JobKind, JobStatus
from common.jobs.queue import CANCEL_IMAGE, POLL_IMAGE, RUN_CHAT, STORE_IMAGES, SUBMIT_IMAGE
from common.jobs.results import ChatCompletion, ImageResult
from common.jobs.views import JobView
from common.upstream.failures import UpstreamError
from common.upstream.interface import ChatResult, UpstreamTask
from tests.service.conftest import counter

LEASE = 30


def chat_billed(job_id: str, tokens=(10, 5)) -> Billed:
    usage = Usage(input_tokens=tokens[0], output_tokens=tokens[1], total_tokens=sum(tokens))
    answer = ChatResult(message={"role": "assistant", "content": "hello"},
                        finish_reason="stop", usage=usage)
    return Billed(result=ChatCompletion.of(job_id=job_id, model="qwen-turbo", answer=answer),
                  usage=usage, cost=Decimal("0.00001"), currency="CNY")


def row(database, job_id: str) -> Job:
    with database.session() as session:
        return session.get(Job, job_id)


def usage_count(database, job_id: str) -> int:
    with database.session() as session:
        return len(session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id)).all())


def backdate(database, job_id: str, **columns) -> None:
    with database.transaction() as conn:
        conn.execute(update(transitions.jobs).where(transitions.jobs.c.id == job_id)
                     .values(**columns))


def owner_of(make_job) -> queries.Owner:
    return queries.Owner(user_id=make_job.owner["id"])


# --- claim -------------------------------------------------------------------------------

def test_a_claim_takes_the_lease_and_counts_the_attempt(service_lifecycle, make_job, database):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    assert claim is not None and claim.attempt == 1 and claim.id == job_id
    job = row(database, job_id)
    assert job.status == JobStatus.RUNNING and job.attempts == 1
    assert job.lease_until > utcnow() + dt.timedelta(seconds=LEASE - 5)
    assert job.started_at is not None


def test_a_second_delivery_during_the_first_attempt_is_refused(service_lifecycle, make_job,
                                                               database):
    """The lease, not just the status, decides: a running job whose lease is held is not
    claimed again, so a duplicate message never calls upstream twice."""
    job_id = make_job()
    assert service_lifecycle.claim(job_id, lease_seconds=LEASE) is not None
    assert service_lifecycle.claim(job_id, lease_seconds=LEASE) is None
    assert row(database, job_id).attempts == 1


def test_an_expired_lease_is_claimed_again_as_the_next_attempt(service_lifecycle, make_job,
                                                               database):
    job_id = make_job()
    service_lifecycle.claim(job_id, lease_seconds=LEASE)
    backdate(database, job_id, lease_until=utcnow() - dt.timedelta(seconds=1))
    again = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    assert again is not None and again.attempt == 2


def test_two_simultaneous_claims_have_one_winner(service_lifecycle, make_job):
    for _ in range(5):
        job_id = make_job()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            claims = list(pool.map(
                lambda same: service_lifecycle.claim(same, lease_seconds=LEASE), [job_id] * 4))
        assert sum(claim is not None for claim in claims) == 1


def test_a_finished_job_is_never_claimed(service_lifecycle, make_job):
    job_id = make_job()
    service_lifecycle.finish(service_lifecycle.claim(job_id, lease_seconds=LEASE),
                             chat_billed(job_id))
    assert service_lifecycle.claim(job_id, lease_seconds=LEASE) is None


@pytest.mark.parametrize("ending", ["deadline", "attempts"])
def test_a_claim_time_failure_ends_the_job_and_wakes_its_waiters(
        service_lifecycle, make_job, database, wakeups, ending):
    job_id = make_job(deadline_in=-1) if ending == "deadline" else make_job(attempts=3)
    before = counter("jobs_finished_total", kind="chat", status="failed")
    assert service_lifecycle.claim(job_id, lease_seconds=LEASE) is None
    job = row(database, job_id)
    assert job.status == JobStatus.FAILED and job.lease_until is None
    assert job.error_code == ("deadline_exceeded" if ending == "deadline"
                              else "attempts_exhausted")
    assert wakeups.of(job_id) != []
    assert counter("jobs_finished_total", kind="chat", status="failed") == before + 1


# --- finish ------------------------------------------------------------------------------

def test_finish_records_the_result_and_one_usage_row_in_one_transaction(
        service_lifecycle, make_job, database, wakeups):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    cost_before = counter("usage_cost_total", model="qwen-turbo", currency="CNY")
    assert service_lifecycle.finish(claim, chat_billed(job_id)) == JobStatus.SUCCEEDED
    job = row(database, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.lease_until is None
    assert ChatCompletion.model_validate(job.result).choices[0].message.content == "hello"
    assert usage_count(database, job_id) == 1
    assert counter("usage_cost_total", model="qwen-turbo", currency="CNY") == pytest.approx(
        cost_before + 0.00001)
    # The wake-up carries the job, so a waiting request answers without reading the row.
    [announced] = wakeups.of(job_id)
    view = JobView.model_validate_json(announced)
    assert view.status == JobStatus.SUCCEEDED and view.result.id == f"chatcmpl-{job_id}"
    assert view.usage.total_tokens == 15 and view.usage.cost == Decimal("0.00001")
    with database.connect() as conn:
        assert queries.find(conn, job_id) == view  # the same job the row shows


def test_a_redelivered_result_for_a_finished_job_is_a_no_op(service_lifecycle, make_job,
                                                            database):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    assert service_lifecycle.finish(claim, chat_billed(job_id)) == JobStatus.SUCCEEDED
    assert service_lifecycle.finish(claim, chat_billed(job_id, tokens=(99, 99))) is None
    assert usage_count(database, job_id) == 1
    with database.session() as session:
        usage = session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id)).one()
    assert usage.input_tokens == 10  # the first record stands


def test_finish_after_cancel_bills_but_keeps_the_job_canceled(service_lifecycle, make_job,
                                                               database, wakeups):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    service_lifecycle.cancel(job_id, owner_of(make_job))
    wakeups.of(job_id)  # the cancel's wake-up
    wakeups.seen.clear()
    assert service_lifecycle.finish(claim, chat_billed(job_id)) == JobStatus.CANCELED
    job = row(database, job_id)
    assert job.status == JobStatus.CANCELED and job.result is None
    assert usage_count(database, job_id) == 1  # DashScope billed it: so do we
    with database.connect() as conn:
        view = queries.find(conn, job_id)
    assert view.result is None and view.usage.total_tokens == 15
    assert wakeups.of(job_id, timeout=0.3) == []  # nothing ended now


def test_cancel_after_finish_is_a_conflict_and_changes_nothing(service_lifecycle, make_job,
                                                               database):
    job_id = make_job()
    service_lifecycle.finish(service_lifecycle.claim(job_id, lease_seconds=LEASE),
                             chat_billed(job_id))
    with pytest.raises(Conflict):
        service_lifecycle.cancel(job_id, owner_of(make_job))
    assert row(database, job_id).status == JobStatus.SUCCEEDED


def test_only_the_owner_or_an_admin_may_cancel(service_lifecycle, make_job, database):
    job_id = make_job()
    with pytest.raises(NotFound):
        service_lifecycle.cancel(job_id, queries.Owner(user_id=make_job.owner["id"] + 10**6))
    assert row(database, job_id).status == JobStatus.QUEUED
    admin = queries.Owner(user_id=make_job.owner["id"] + 10**6, is_admin=True)
    assert service_lifecycle.cancel(job_id, admin).status == JobStatus.CANCELED


# --- failing and retrying ----------------------------------------------------------------

def test_fail_ends_an_unfinished_job_once(service_lifecycle, make_job, database, wakeups):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    assert service_lifecycle.fail(claim, code="InvalidApiKey", message="bad key")
    assert not service_lifecycle.fail(claim, code="Other", message="later")
    job = row(database, job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "InvalidApiKey")
    [announced] = wakeups.of(job_id)
    assert JobView.model_validate_json(announced).error_code == "InvalidApiKey"
    assert usage_count(database, job_id) == 0


def test_a_retryable_failure_releases_the_lease_until_the_retry_is_due(
        service_lifecycle, make_job, database, broker):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    error = UpstreamError(code="Throttling.RateQuota", message="slow down", status=429,
                          retryable=True, retry_after=5)
    before = counter("job_retries_total", kind="chat", reason="Throttling.RateQuota")
    assert service_lifecycle.upstream_failed(claim, error, retry_task=RUN_CHAT)
    [retry] = broker.steps_for(job_id)
    assert (retry.task, retry.args, retry.countdown) == (RUN_CHAT, [job_id], True)
    job = row(database, job_id)
    assert job.status == JobStatus.RUNNING
    assert job.lease_until > utcnow()  # held until the retry is due (the capped 2 s, less 1)
    assert service_lifecycle.claim(job_id, lease_seconds=LEASE) is None  # not due yet
    assert counter("job_retries_total", kind="chat", reason="Throttling.RateQuota") == \
        before + 1
    backdate(database, job_id, lease_until=utcnow() - dt.timedelta(seconds=1))
    assert service_lifecycle.claim(job_id, lease_seconds=LEASE).attempt == 2


def test_a_final_upstream_failure_fails_the_job_with_its_code(service_lifecycle, make_job,
                                                              database, broker):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    error = UpstreamError(code="InvalidApiKey", message="Invalid API-key provided.",
                          status=401, retryable=False)
    assert not service_lifecycle.upstream_failed(claim, error, retry_task=RUN_CHAT)
    assert row(database, job_id).error_code == "InvalidApiKey"
    assert broker.steps_for(job_id) == []


def test_retrying_a_job_canceled_meanwhile_publishes_nothing(service_lifecycle, make_job,
                                                             broker):
    job_id = make_job()
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    service_lifecycle.cancel(job_id, owner_of(make_job))
    error = UpstreamError(code="InternalError", message="", status=500, retryable=True)
    service_lifecycle.upstream_failed(claim, error, retry_task=RUN_CHAT)
    assert broker.steps_for(job_id) == []


# --- image jobs: the upstream task, polls, copies ----------------------------------------

def _image_with_task(service_lifecycle, make_job, broker, task_id="task-1"):
    job_id = make_job(JobKind.IMAGE)
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    service_lifecycle.record_upstream_task(claim, task_id=task_id, first_poll_in=1)
    return job_id, broker.steps_for(job_id)


def test_the_upstream_task_id_is_committed_once_and_the_first_poll_published(
        service_lifecycle, make_job, database, broker):
    job_id, steps = _image_with_task(service_lifecycle, make_job, broker)
    assert [(s.task, s.args) for s in steps] == [(POLL_IMAGE, [job_id, 0])]
    job = row(database, job_id)
    assert (job.upstream_task_id, job.upstream_status, job.lease_until) == \
        ("task-1", "PENDING", None)
    # A redelivered submit never replaces the task the job already owns.
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    assert claim is not None and claim.upstream_task_id == "task-1"
    service_lifecycle.record_upstream_task(claim, task_id="task-2", first_poll_in=1)
    assert row(database, job_id).upstream_task_id == "task-1"


def test_a_task_submitted_for_a_job_canceled_meanwhile_is_canceled(service_lifecycle,
                                                                   make_job, broker):
    job_id = make_job(JobKind.IMAGE)
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    service_lifecycle.cancel(job_id, owner_of(make_job))
    broker.drain()
    service_lifecycle.record_upstream_task(claim, task_id="task-1", first_poll_in=1)
    assert {s.task for s in broker.steps_for(job_id)} == {POLL_IMAGE, CANCEL_IMAGE}


def test_each_poll_number_is_claimed_once(service_lifecycle, make_job, database, broker):
    """A duplicate poll message (same number) is dropped, so there is only ever one polling
    chain per task."""
    job_id, _ = _image_with_task(service_lifecycle, make_job, broker)
    poll = service_lifecycle.begin_poll(job_id, expected_polls=0, lease_seconds=60)
    assert poll is not None and poll.polls == 1
    assert service_lifecycle.begin_poll(job_id, expected_polls=0, lease_seconds=60) is None
    service_lifecycle.poll_again(poll, in_seconds=2, upstream_status="RUNNING")
    [next_poll] = broker.steps_for(job_id)
    assert (next_poll.task, next_poll.args) == (POLL_IMAGE, [job_id, 1])
    assert row(database, job_id).upstream_status == "RUNNING"
    assert service_lifecycle.begin_poll(job_id, expected_polls=1, lease_seconds=60) is not None
    assert row(database, job_id).polls == 2


def test_a_finished_task_is_not_polled_again(service_lifecycle, make_job, broker):
    job_id, _ = _image_with_task(service_lifecycle, make_job, broker)
    poll = service_lifecycle.begin_poll(job_id, expected_polls=0, lease_seconds=60)
    service_lifecycle.end_canceled_upstream(poll)
    assert service_lifecycle.begin_poll(job_id, expected_polls=1, lease_seconds=60) is None


def test_a_succeeded_task_owes_the_copy_of_its_images(service_lifecycle, make_job, database,
                                                      broker, wakeups):
    job_id, _ = _image_with_task(service_lifecycle, make_job, broker)
    poll = service_lifecycle.begin_poll(job_id, expected_polls=0, lease_seconds=60)
    task = UpstreamTask(task_id="task-1", status="SUCCEEDED", image_count=1,
                        results=[{"url": "https://example.aliyuncs.com/1.png"}])
    result = ImageResult.of(task)
    billed = Billed(result=result, usage=Usage(image_count=1), cost=Decimal("0.16"),
                    currency="CNY")
    assert service_lifecycle.finish(poll, billed, upstream_status="SUCCEEDED",
                                    store_images=True) == JobStatus.SUCCEEDED
    [store] = broker.steps_for(job_id)
    assert store.task == STORE_IMAGES and row(database, job_id).next_action_at is not None
    [announced] = wakeups.of(job_id)
    assert not JobView.model_validate_json(announced).settled  # the copy is still owed
    wakeups.seen.clear()
    result.images[0][1].stored, result.images[0][1].key = True, f"{job_id}/0.png"
    service_lifecycle.record_copies(job_id, JobKind.IMAGE, result, retry_in=None)
    assert row(database, job_id).next_action_at is None
    assert wakeups.of(job_id) == [None]  # settled now: waiters read our links
    with database.connect() as conn:
        assert queries.find(conn, job_id).settled


def test_a_failed_copy_is_retried_later(service_lifecycle, make_job, database, broker):
    job_id, _ = _image_with_task(service_lifecycle, make_job, broker)
    poll = service_lifecycle.begin_poll(job_id, expected_polls=0, lease_seconds=60)
    task = UpstreamTask(task_id="task-1", status="SUCCEEDED", image_count=1,
                        results=[{"url": "https://example.aliyuncs.com/1.png"}])
    result = ImageResult.of(task)
    service_lifecycle.finish(poll, Billed(result=result, usage=Usage(image_count=1),
                                          cost=Decimal("0.16"), currency="CNY"),
                             upstream_status="SUCCEEDED", store_images=True)
    broker.drain()
    result.images[0][1].storage_error = "timeout"
    service_lifecycle.record_copies(job_id, JobKind.IMAGE, result, retry_in=30)
    [retry] = broker.steps_for(job_id)
    assert retry.task == STORE_IMAGES and retry.countdown
    assert row(database, job_id).next_action_at > utcnow() + dt.timedelta(seconds=20)


# --- the owner's cancel and the deadline: one use case -----------------------------------

@pytest.mark.parametrize("ending", ["cancel", "deadline"])
def test_cancel_and_deadline_end_a_job_with_the_same_effects(
        service_lifecycle, make_job, database, broker, wakeups, ending):
    """Either way: the job ends, its waiters wake, the upstream task still running is asked
    to stop (its polls go on, for the bill), and the ending is counted."""
    job_id, _ = _image_with_task(service_lifecycle, make_job, broker)
    status = "canceled" if ending == "cancel" else "failed"
    before = counter("jobs_finished_total", kind="image", status=status)
    if ending == "cancel":
        service_lifecycle.cancel(job_id, owner_of(make_job))
    else:
        backdate(database, job_id, deadline_at=utcnow() - dt.timedelta(seconds=1))
        assert service_lifecycle.expire_overdue() >= 1
    job = row(database, job_id)
    assert job.status.value == status and job.next_action_at is not None  # still polled
    assert [s.task for s in broker.steps_for(job_id)] == [CANCEL_IMAGE]
    assert wakeups.of(job_id) != []
    assert counter("jobs_finished_total", kind="image", status=status) == before + 1


def test_expiry_skips_finished_jobs_and_jobs_within_their_deadline(service_lifecycle,
                                                                   make_job, database):
    overdue, fresh, done = make_job(deadline_in=-1), make_job(), make_job(deadline_in=-1)
    backdate(database, done, status=JobStatus.SUCCEEDED)
    service_lifecycle.expire_overdue()
    assert row(database, overdue).status == JobStatus.FAILED
    assert row(database, fresh).status == JobStatus.QUEUED
    assert row(database, done).status == JobStatus.SUCCEEDED


def test_an_image_submit_retry_goes_through_the_same_decision(service_lifecycle, make_job,
                                                              broker):
    job_id = make_job(JobKind.IMAGE)
    claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
    error = UpstreamError(code="Throttling", message="", status=429, retryable=True)
    assert service_lifecycle.upstream_failed(claim, error, retry_task=SUBMIT_IMAGE)
    assert [s.task for s in broker.steps_for(job_id)] == [SUBMIT_IMAGE]
