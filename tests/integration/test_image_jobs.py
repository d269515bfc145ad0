"""Wanx image jobs end to end: the Flask app, a real worker and beat, MariaDB, Redis and the
emulator's task lifecycle, driven through the real SDK."""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from decimal import Decimal

import pytest
import requests

from common.jobs import submission
from common.jobs.models import Job, JobKind, JobStatus
from tests.support import processes
from tests.support.jobs import (
    assert_all_finish_within_the_budget,
    directive,
    usage_rows,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("platform")
URL = "/api/bailian/generation"
ASYNC = {"Prefer": "respond-async"}


def gen(prompt: str, model: str = "wanx-v1", **parameters) -> dict:
    return {"model": model, "prompt": prompt, "parameters": parameters}


def _task_of(emulator, job: Job) -> dict:
    return emulator.tasks()[job.upstream_task_id]


def test_sync_generation_returns_our_stored_images_and_bills_per_image(client, accounts,
                                                                      database, emulator):
    account, headers = accounts.headers()
    response = client.post(URL, headers=headers, json=gen(
        f"a red fox {directive(duration_s=1)}", size="1024*1024", style="<watercolor>", n=2,
        seed=7, quality="hd"))
    assert response.status_code == 200, response.json
    assert (response.json["code"], response.json["message"]) == (200, "Request successful")
    data = response.json["data"]
    output = data["output"]
    assert output["task_status"] == "SUCCEEDED" and output["task_id"]
    assert data["usage"] == {"image_count": 2}
    assert len(output["results"]) == 2
    for image in output["results"]:
        assert image["stored"] is True and image["content_type"] == "image/png"
        assert "/api/jobs/" in image["url"] and "signature=" in image["url"]
        assert image["upstream_url"].startswith(emulator.base)
        assert image["url"].startswith("/api/jobs/")  # relative: no PUBLIC_BASE_URL is set
        fetched = client.get(image["url"])  # no Authorization header
        assert fetched.status_code == 200 and fetched.data.startswith(b"\x89PNG")
        assert len(fetched.data) == image["size"]

    [usage] = usage_rows(database, data["job_id"])
    assert (usage.image_count, usage.kind, usage.user_id) == (2, JobKind.IMAGE, account["id"])
    assert usage.cost == Decimal("0.32000000") and usage.currency == "CNY"
    job = client.get(f"/api/jobs/{data['job_id']}", headers=headers).json["data"]
    assert job["kind"] == "image" and job["status"] == "succeeded"
    assert job["result"]["output"]["task_id"] == output["task_id"]
    assert job["usage"]["image_count"] == 2 and job["cost"]["amount"] == 0.32


def test_images_outlive_the_upstream_urls(client, accounts, database, emulator):
    _, headers = accounts.headers()
    data = client.post(URL, headers=headers, json=gen(f"a lighthouse {directive(duration_s=0)}")
                       ).json["data"]
    image = data["output"]["results"][0]
    emulator.configure(images_expired=True)  # DashScope's 24-hour URLs have died
    try:
        assert requests.get(image["upstream_url"], timeout=5).status_code == 403
        ours = client.get(image["url"])
        assert ours.status_code == 200 and ours.data.startswith(b"\x89PNG")
        # The owner can also fetch it with a token; anyone else cannot.
        path = f"/api/jobs/{data['job_id']}/images/0"
        assert client.get(path, headers=headers).status_code == 200
        _, stranger = accounts.headers()
        assert client.get(path, headers=stranger).status_code == 404
        assert client.get(path).status_code == 401
        assert client.get(f"{path}?expires=9999999999&signature=forged").status_code == 401
    finally:
        emulator.configure(images_expired=False)


def test_image_links_never_carry_the_host_header(client, settings, accounts):
    from urllib.parse import urlsplit

    from web.app import create_app

    evil = "evil.example"
    hostile = {"X-Forwarded-Host": evil, "Forwarded": f"host={evil}"}
    _, headers = accounts.headers()
    response = client.post(URL, base_url=f"http://{evil}", headers={**headers, **hostile},
                           json=gen(f"a harbour {directive(duration_s=0)}"))
    assert response.status_code == 200, response.json
    assert evil not in response.get_data(as_text=True)
    [image] = response.json["data"]["output"]["results"]
    assert image["url"].startswith(f"/api/jobs/{response.json['data']['job_id']}/images/0?")

    # With PUBLIC_BASE_URL (and a trusted proxy hop) the link is absolute, on that origin only.
    public = create_app(settings.model_copy(update={
        "public_base_url": "https://api.example.com", "trusted_proxy_hops": 1})).test_client()
    job = public.get(f"/api/jobs/{response.json['data']['job_id']}", base_url=f"http://{evil}",
                     headers={**headers, **hostile})
    assert evil not in job.get_data(as_text=True)
    url = job.json["data"]["result"]["output"]["results"][0]["url"]
    assert url.startswith("https://api.example.com/api/jobs/")
    parts = urlsplit(url)
    fetched = client.get(f"{parts.path}?{parts.query}")  # the signature covers the path only
    assert fetched.status_code == 200 and fetched.data.startswith(b"\x89PNG")


def test_partial_failure_succeeds_keeping_per_image_errors_and_bills_generated_only(
        client, accounts, database):
    _, headers = accounts.headers()
    response = client.post(URL, headers=headers, json=gen(
        f"four cats {directive(outcome='partial', duration_s=0)}", n=4))
    assert response.status_code == 200
    results = response.json["data"]["output"]["results"]
    assert sum(1 for r in results if r.get("url")) == 2
    errors = [r for r in results if "code" in r]
    assert len(errors) == 2 and errors[0]["code"] == "InternalError.Timeout"
    [usage] = usage_rows(database, response.json["data"]["job_id"])
    assert usage.image_count == 2 and usage.cost == Decimal("0.32000000")


@pytest.mark.parametrize("prompt, status, code", [
    ("a failure", 502, "InternalError"),
    ("inspection needed", 400, "DataInspectionFailed"),
])
def test_failed_task_fails_the_job_with_its_code(client, accounts, database, prompt, status,
                                                 code):
    _, headers = accounts.headers()
    response = client.post(URL, headers=headers, json=gen(
        f"{prompt} {directive(outcome='failed', duration_s=0)}"))
    assert response.status_code == status
    job = response.json["data"]
    assert job["status"] == "failed" and job["error"]["code"] == code
    assert usage_rows(database, job["id"]) == []


def test_unknown_task_fails_the_job(client, accounts, database):
    _, headers = accounts.headers()
    response = client.post(URL, headers=headers, json=gen(
        f"vanishing {directive(outcome='unknown', duration_s=0)}"))
    assert response.json["data"]["error"]["code"] == "UpstreamTaskUnknown"
    assert usage_rows(database, response.json["data"]["id"]) == []


def test_task_canceled_upstream_cancels_the_job(client, accounts, database):
    _, headers = accounts.headers()
    response = client.post(URL, headers=headers, json=gen(
        f"canceled elsewhere {directive(outcome='canceled', duration_s=0)}"))
    assert response.status_code == 409
    assert response.json["data"]["status"] == "canceled"


def test_cancel_while_pending_cancels_upstream_and_bills_nothing(client, accounts, database,
                                                                 emulator):
    _, headers = accounts.headers()
    accepted = client.post(URL, headers={**headers, **ASYNC},
                           json=gen(f"queued {directive(pending_s=60)}"))
    job_id = accepted.json["data"]["id"]
    job = wait_until(lambda: (j := _reload(database, job_id)).upstream_task_id and j,
                     timeout=20)
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code == 200
    wait_until(lambda: _task_of(emulator, job)["status"] == "CANCELED", timeout=20,
               message="the upstream task was never canceled")
    wait_until(lambda: _reload(database, job_id).upstream_status == "CANCELED", timeout=30)
    final = _reload(database, job_id)
    assert final.status == JobStatus.CANCELED
    assert usage_rows(database, job_id) == []


def test_cancel_while_running_hides_results_but_records_what_dashscope_bills(
        client, accounts, database, emulator):
    _, headers = accounts.headers()
    accepted = client.post(URL, headers={**headers, **ASYNC},
                           json=gen(f"running {directive(duration_s=3)}", n=3))
    job_id = accepted.json["data"]["id"]
    wait_until(lambda: _reload(database, job_id).upstream_status == "RUNNING", timeout=20)
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code == 200
    # DashScope refuses to cancel a running task: it finishes and bills its images.
    wait_until(lambda: usage_rows(database, job_id), timeout=30)
    [usage] = usage_rows(database, job_id)
    assert usage.image_count == 3
    shown = client.get(f"/api/jobs/{job_id}", headers=headers).json["data"]
    assert shown["status"] == "canceled" and shown["result"] is None
    assert shown["usage"]["image_count"] == 3


def test_deadline_fails_the_job_and_cancels_the_upstream_task(accounts, database, emulator,
                                                              lifecycle, settings):
    account = accounts.create()
    job, _ = submission.submit(
        lifecycle=lifecycle, settings=settings.model_copy(update={
            "image_job_deadline_seconds": 4}), user_id=account["id"], kind=JobKind.IMAGE,
        model="wanx-v1", request={"prompt": f"slow {directive(pending_s=60)}",
                                  "negative_prompt": None, "parameters": {"n": 1}})
    failed = wait_for_job(database, job.id, timeout=30)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "deadline_exceeded")
    wait_until(lambda: _task_of(emulator, _reload(database, job.id))["status"] == "CANCELED",
               timeout=30, message="no upstream cancel was attempted")


def test_idempotent_replay_submits_upstream_once(client, accounts, database, emulator):
    _, headers = accounts.headers()
    marker = directive(duration_s=0)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(URL, headers={**headers, **key}, json=gen(f"once {marker}"))
    second = client.post(URL, headers={**headers, **key}, json=gen(f"once {marker}"))
    assert first.json["data"]["job_id"] == second.json["data"]["job_id"]
    assert emulator.calls_with(marker.id, endpoint="image_submit") == 1


def test_submissions_wait_for_the_models_concurrency_limit(client, accounts, database,
                                                           emulator):
    """wanx2.0-t2i-turbo is configured like DashScope: 2 submits/s and 1 running task."""
    _, headers = accounts.headers()
    ids = [client.post(URL, headers={**headers, **ASYNC}, json=gen(
        f"queue {i} {directive(duration_s=1)}", model="wanx2.0-t2i-turbo")).json["data"]["id"]
        for i in range(3)]
    finished = [wait_for_job(database, job_id, timeout=60) for job_id in ids]
    assert all(job.status == JobStatus.SUCCEEDED for job in finished)
    tasks = sorted((_task_of(emulator, job) for job in finished), key=lambda t: t["submitted"])
    for earlier, later in itertools.pairwise(tasks):
        assert later["submitted"] >= earlier["ended"] - 0.05, "two tasks ran at once"


def test_worker_killed_mid_flight_resumes_polling_without_resubmitting(
        client, accounts, database, emulator, platform):
    _, headers = accounts.headers()
    marker = directive(duration_s=6)
    ids = [client.post(URL, headers={**headers, **ASYNC},
                       json=gen(f"survivor {i} {marker}")).json["data"]["id"] for i in range(5)]
    wait_until(lambda: all(_reload(database, i).upstream_task_id for i in ids), timeout=30)
    platform.worker.kill(signal.SIGKILL)
    time.sleep(2)
    platform.worker = processes.worker(platform.env, platform.log_dir)
    finished = [wait_for_job(database, job_id, timeout=90) for job_id in ids]
    assert all(job.status == JobStatus.SUCCEEDED for job in finished)
    assert emulator.calls_with(marker.id, endpoint="image_submit") == 5  # no second submit
    assert all(len(usage_rows(database, job_id)) == 1 for job_id in ids)


def _reload(database, job_id: str) -> Job:
    with database.session() as session:
        return session.get(Job, job_id)


def test_three_hundred_tasks_in_flight_stay_within_the_query_budget(
        client, accounts, database, emulator, settings):
    """300 generations at once, 2-20 s each, on one worker process: all finish, each within
    one poll interval of its upstream completion, and no second ever sees more task queries
    than the budget."""
    _, headers = accounts.headers()
    emulator.reset()
    ids = []
    for i in range(300):
        duration = 2 + (i * 18 / 299)
        response = client.post(URL, headers={**headers, **ASYNC}, json=gen(
            f"crowd {i} {directive(duration_s=round(duration, 2))}"))
        assert response.status_code == 202
        ids.append(response.json["data"]["id"])
    assert_all_finish_within_the_budget(emulator, database, ids, settings.task_query_budget,
                                        timeout=240)
