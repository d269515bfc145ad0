"""The job row as its own outbox: the sweeper's relays find every message a job is owed that
never reached a worker, and send it again; nothing else."""

from __future__ import annotations

import datetime as dt

from common.infra.orm import utcnow
from common.jobs import outbox
from common.jobs.models import JobKind, JobStatus
from common.jobs.queue import POLL_IMAGE, RUN_CHAT, STORE_IMAGES, SUBMIT_IMAGE
from tests.service.test_lifecycle import LEASE, backdate, row

GRACE, STALE = 10, 300


def republish(lifecycle) -> tuple[int, int]:
    return outbox.republish_unsent(database=lifecycle.database, effects=lifecycle.effects,
                                   grace_seconds=GRACE, republish_after_seconds=STALE,
                                   limit=100_000)  # every due row of the session, ours too


def resume(lifecycle) -> int:
    return outbox.resume_owed_actions(database=lifecycle.database, effects=lifecycle.effects,
                                      grace_seconds=GRACE, retry_after_seconds=STALE,
                                      limit=100_000)


def ago(seconds: float) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=seconds)


def test_a_job_whose_first_message_never_left_is_published(service_lifecycle, make_job,
                                                           database, broker):
    job_id = make_job(enqueued_at=None, created_at=ago(GRACE + 1))
    republish(service_lifecycle)
    assert [(s.task, s.args) for s in broker.steps_for(job_id)] == [(RUN_CHAT, [job_id])]
    assert row(database, job_id).enqueued_at > ago(5)


def test_a_job_published_long_ago_and_never_claimed_is_published_again(
        service_lifecycle, make_job, database, broker):
    """The message left, then the broker lost it: nothing in Redis says so, only the row."""
    job_id = make_job(JobKind.IMAGE, enqueued_at=ago(STALE + 1), created_at=ago(STALE + 1))
    republish(service_lifecycle)
    assert [s.task for s in broker.steps_for(job_id)] == [SUBMIT_IMAGE]
    assert row(database, job_id).enqueued_at > ago(5)
    republish(service_lifecycle)  # published again just now: not again at the next sweep
    assert broker.steps_for(job_id) == []


def test_a_running_job_whose_worker_died_is_published_again(service_lifecycle, make_job,
                                                            database, broker):
    job_id = make_job(enqueued_at=ago(60), created_at=ago(60))
    service_lifecycle.claim(job_id, lease_seconds=LEASE)
    backdate(database, job_id, lease_until=ago(GRACE + 1))
    republish(service_lifecycle)
    assert [s.task for s in broker.steps_for(job_id)] == [RUN_CHAT]


def test_jobs_within_their_grace_or_lease_are_left_alone(service_lifecycle, make_job,
                                                         database, broker):
    fresh = make_job(enqueued_at=None)  # the web process may still be publishing it
    published = make_job(enqueued_at=ago(5))
    running = make_job()
    service_lifecycle.claim(running, lease_seconds=LEASE)
    finished = make_job(enqueued_at=None, created_at=ago(GRACE + 1))
    backdate(database, finished, status=JobStatus.SUCCEEDED)
    republish(service_lifecycle)
    assert {tuple(s.args) for s in broker.drain()} & \
        {(fresh,), (published,), (running,), (finished,)} == set()


def test_a_lost_poll_or_copy_is_resumed_and_its_due_time_moves_on(service_lifecycle,
                                                                  make_job, database,
                                                                  broker):
    polling = make_job(JobKind.IMAGE, status=JobStatus.RUNNING, upstream_task_id="t1",
                       upstream_status="RUNNING", polls=3, next_action_at=ago(GRACE + 5))
    copying = make_job(JobKind.IMAGE, status=JobStatus.SUCCEEDED, upstream_task_id="t2",
                       upstream_status="SUCCEEDED", next_action_at=ago(GRACE + 5))
    owed_nothing = make_job(JobKind.IMAGE, status=JobStatus.CANCELED, upstream_task_id="t3",
                            upstream_status="FAILED", next_action_at=ago(GRACE + 5))
    assert resume(service_lifecycle) >= 2
    steps = {s.args[0]: s for s in broker.drain()}
    assert (steps[polling].task, steps[polling].args) == (POLL_IMAGE, [polling, 3])
    assert steps[copying].task == STORE_IMAGES
    assert owed_nothing not in steps and row(database, owed_nothing).next_action_at is None
    for job_id in (polling, copying):
        assert row(database, job_id).next_action_at > utcnow() + dt.timedelta(seconds=STALE - 5)
    resume(service_lifecycle)
    assert not {polling, copying} & {s.args[0] for s in broker.drain()}


def test_a_job_whose_first_publish_failed_is_marked_for_the_next_sweep(
        service_settings, service_lifecycle, database, accounts, broker):
    """The broker refused the first publish: the job is accepted all the same, and its row
    says so, so the sweeper publishes it once the grace period is over rather than
    REPUBLISH_QUEUED_AFTER_SECONDS after the failed publish."""
    from common.infra.redis_client import redis_from_settings
    from common.jobs import submission
    from common.jobs.lifecycle import JobLifecycle
    from common.jobs.queue import make_celery

    down = service_settings.model_copy(update={"celery_broker_url": "redis://127.0.0.1:1/0"})
    unreachable = JobLifecycle.of(settings=down, database=database,
                                  redis_client=redis_from_settings(down),
                                  celery=make_celery(down))
    view, created = submission.submit(lifecycle=unreachable, settings=down,
                                      user_id=accounts.create()["id"], kind=JobKind.CHAT,
                                      model="qwen-turbo", request={"messages": []})
    assert created and row(database, view.id).enqueued_at is None
    backdate(database, view.id, created_at=ago(GRACE + 1))
    republish(service_lifecycle)
    assert [s.args for s in broker.steps_for(view.id)] == [[view.id]]
