"""Video jobs end to end: a real worker and beat, the emulator's video tasks and tiny MP4,
the stored copy served with HTTP Range, cancel, a worker killed mid-poll, and the task-query
budget shared with image polls."""

from __future__ import annotations

import hashlib
import signal
import time
from decimal import Decimal

import pytest

from common.jobs.models import Job, JobStatus
from emulator import videos
from tests.support import processes
from tests.support.images import png, upload
from tests.support.jobs import (
    assert_all_finish_within_the_budget,
    directive,
    usage_rows,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("platform")
URL = "/api/bailian/video"


def t2v(prompt: str, **extra) -> dict:
    return {"model": "wan2.2-t2v-plus", "prompt": prompt, **extra}


def _reload(database, job_id: str) -> Job:
    with database.session() as session:
        return session.get(Job, job_id)


def _finished_view(client, headers, database, job_id: str, timeout: float = 60) -> dict:
    assert wait_for_job(database, job_id, timeout=timeout).status == JobStatus.SUCCEEDED
    return wait_until(lambda: (view := client.get(f"/api/jobs/{job_id}", headers=headers)
                               .json["data"])["result"]["output"]["video"]["stored"] and view,
                      timeout=30, message="the video was never stored")


def test_text_to_video_is_202_then_stored_served_with_ranges_and_billed_per_second(
        client, accounts, database, emulator):
    _, headers = accounts.headers()
    response = client.post(URL, headers=headers, json=t2v(
        f"a cat surfing {directive(duration_s=1, video_kb=300)}", size="1920*1080",
        seed=3, prompt_extend=False))
    assert response.status_code == 202, response.json  # no Prefer header: videos answer 202
    job_id = response.json["data"]["id"]
    assert response.headers["Location"].endswith(f"/api/jobs/{job_id}")
    view = _finished_view(client, headers, database, job_id)
    assert view["kind"] == "video"
    video = view["result"]["output"]["video"]
    task = emulator.tasks()[_reload(database, job_id).upstream_task_id]
    expected = videos.mp4_bytes(task["task_id"], 5, 300)
    assert video["content_type"] == "video/mp4" and video["size"] == len(expected)
    assert video["sha256"] == hashlib.sha256(expected).hexdigest()
    assert video["url"].startswith(f"/api/jobs/{job_id}/media/0?")

    whole = client.get(video["url"])  # the signed link needs no Authorization header
    assert whole.status_code == 200 and whole.data == expected
    assert whole.headers["Accept-Ranges"] == "bytes"
    head = client.get(video["url"], headers={"Range": "bytes=0-99"})
    assert head.status_code == 206 and head.data == expected[:100]
    assert head.headers["Content-Range"] == f"bytes 0-99/{len(expected)}"
    tail = client.get(video["url"], headers={"Range": f"bytes={len(expected) - 10}-"})
    assert tail.status_code == 206 and tail.data == expected[-10:]
    assert client.get(video["url"], headers={
        "Range": f"bytes={len(expected) + 5}-"}).status_code == 416
    poster = view["result"]["output"]["poster"]
    assert poster["stored"] and client.get(poster["url"]).data.startswith(b"\x89PNG")

    assert view["result"]["usage"] == {"video_seconds": 5, "video_count": 1}
    assert view["usage"]["video_seconds"] == 5 and view["usage"]["video_count"] == 1
    [usage] = usage_rows(database, job_id)
    assert (usage.video_seconds, usage.video_count) == (5, 1)
    assert usage.cost == Decimal("3.50000000")  # 5 s x 0.70 per second
    assert view["cost"]["amount"] == 3.5
    totals = client.get("/api/usage", headers=headers).json["data"]["totals"]
    assert (totals["video_seconds"], totals["cost"]) == (5, 3.5)


def test_image_to_video_from_an_upload_and_sync_with_prefer_wait(client, accounts, database,
                                                                  emulator):
    _, headers = accounts.headers()
    image = png(64, 64, (1, 2, 3))
    file_id = upload(client, headers, image).json["data"]["id"]
    response = client.post(URL, headers={**headers, "Prefer": "wait=20"}, json={
        "model": "wan2.2-i2v-flash", "prompt": f"it moves {directive(duration_s=1)}",
        "image": {"file_id": file_id}, "resolution": "720P"})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["output"]["video"]["stored"] and data["usage"]["video_seconds"] == 5
    task = emulator.tasks()[data["output"]["task_id"]]
    [sent] = task["inputs"]
    [uploaded] = [o for o in emulator.uploads() if f"oss://{o['key']}" == sent]
    assert uploaded["sha256"] == hashlib.sha256(image).hexdigest()


def test_video_requests_are_validated_per_model(client, accounts):
    _, headers = accounts.headers()
    image = "https://example.com/first.png"
    cases = [
        (t2v("x", size="1280*720"), "size"),
        (t2v("x", duration=10), "duration"),
        (t2v("x", resolution="720P"), "resolution"),
        (t2v("x", image=image), "image"),
        ({"model": "wan2.2-t2v-plus"}, "prompt"),
        ({"model": "wan2.2-i2v-flash", "prompt": "x"}, "image"),
        ({"model": "wan2.2-i2v-flash", "image": image, "resolution": "4K"}, "resolution"),
        ({"model": "wanx2.1-kf2v-plus", "last_frame": image}, "first_frame"),
        (t2v("x", seed=-1), "seed"),
        (t2v("x" * 801), "prompt"),
        ({"model": "sora", "prompt": "x"}, "model"),
    ]
    for body, field in cases:
        response = client.post(URL, headers=headers, json=body)
        assert response.status_code == 400, (body, response.json)
        assert field in {e["field"] for e in response.json["errors"]}, (body, response.json)
    for body in (t2v("x", size="832*480", duration=5),
                 {"model": "wan2.5-t2v-preview", "prompt": "x", "duration": 10},
                 {"model": "wan2.2-i2v-flash", "image": image, "resolution": "480P"},
                 {"model": "wanx2.1-kf2v-plus", "first_frame": image, "last_frame": image}):
        assert client.post(URL, headers={**headers, "Prefer": "respond-async"},
                           json=body).status_code == 202, body


def test_jobs_list_filters_by_the_new_kinds(client, accounts):
    _, headers = accounts.headers()
    asynchronous = {**headers, "Prefer": "respond-async"}
    client.post(URL, headers=asynchronous, json=t2v(f"one {directive(duration_s=0)}"))
    client.post("/api/bailian/image-edit", headers=asynchronous, json={
        "model": "wanx2.1-imageedit", "function": "colorization", "prompt": "colour",
        "base_image": "https://example.com/old.png"})
    for kind in ("video", "image_edit"):
        items = client.get(f"/api/jobs?kind={kind}", headers=headers).json["data"]["items"]
        assert [item["kind"] for item in items] == [kind]


def test_a_video_canceled_while_running_upstream_hides_the_video_but_records_the_bill(
        client, accounts, database):
    _, headers = accounts.headers()
    job_id = client.post(URL, headers=headers, json=t2v(
        f"long {directive(duration_s=4)}")).json["data"]["id"]
    wait_until(lambda: _reload(database, job_id).upstream_status == "RUNNING", timeout=20)
    canceled = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert canceled.status_code == 200 and canceled.json["data"]["status"] == "canceled"
    # DashScope cannot cancel a running task: it finishes and bills its seconds.
    wait_until(lambda: usage_rows(database, job_id), timeout=30)
    shown = client.get(f"/api/jobs/{job_id}", headers=headers).json["data"]
    assert shown["status"] == "canceled" and shown["result"] is None
    assert shown["usage"]["video_seconds"] == 5


def test_worker_killed_during_a_video_poll_resumes_without_resubmitting(
        client, accounts, database, emulator, platform):
    _, headers = accounts.headers()
    marker = directive(duration_s=6)
    ids = [client.post(URL, headers=headers, json=t2v(f"survivor {i} {marker}"))
           .json["data"]["id"] for i in range(3)]
    wait_until(lambda: all(_reload(database, i).polls >= 1 for i in ids), timeout=30)
    platform.worker.kill(signal.SIGKILL)
    time.sleep(1)
    platform.worker = processes.worker(platform.env, platform.log_dir)
    finished = [wait_for_job(database, job_id, timeout=90) for job_id in ids]
    assert all(job.status == JobStatus.SUCCEEDED for job in finished)
    assert emulator.calls_with(marker.id, endpoint="video_submit") == 3  # no second submit
    assert all(len(usage_rows(database, job_id)) == 1 for job_id in ids)


def test_two_hundred_images_and_fifty_videos_share_the_query_budget(
        client, accounts, database, emulator, settings):
    """250 tasks at once on one worker: every query second stays within the budget, and each
    task is seen within one poll interval of finishing upstream. (An admin: no spend budget
    would hold 50 videos.)"""
    _, headers = accounts.headers("admin")
    emulator.reset()
    ids = []
    asynchronous = {**headers, "Prefer": "respond-async"}
    for i in range(200):
        response = client.post("/api/bailian/generation", headers=asynchronous, json={
            "model": "wanx-v1",
            "prompt": f"crowd {i} {directive(duration_s=round(2 + i * 8 / 199, 2))}"})
        assert response.status_code == 202
        ids.append(response.json["data"]["id"])
    for i in range(50):
        response = client.post(URL, headers=headers, json=t2v(
            f"film {i} {directive(duration_s=round(3 + i * 9 / 49, 2), video_kb=64)}"))
        assert response.status_code == 202
        ids.append(response.json["data"]["id"])
    finished, tasks = assert_all_finish_within_the_budget(
        emulator, database, ids, settings.task_query_budget, timeout=120)
    kinds = {tasks[job.upstream_task_id]["kind"] for job in finished}
    assert kinds == {"image", "video"}
