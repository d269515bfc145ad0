"""Image edits end to end (wanx2.1-imageedit): a real worker and the emulator, input images
from an https URL (sent as given), an upload and a previous job's image (both through
DashScope's temporary file upload, byte for byte), a mask edit, and the refusals."""

from __future__ import annotations

import hashlib

import pytest

from common.jobs.models import Job, JobStatus
from tests.support.images import png, upload
from tests.support.jobs import directive, usage_rows, wait_for_job

pytestmark = pytest.mark.usefixtures("platform")
URL = "/api/bailian/image-edit"
ASYNC = {"Prefer": "respond-async"}


def edit(prompt: str, base, function: str = "description_edit", **extra) -> dict:
    return {"model": "wanx2.1-imageedit", "function": function, "prompt": prompt,
            "base_image": base, **extra}


def _task(emulator, database, job_id: str) -> dict:
    with database.session() as session:
        task_id = session.get(Job, job_id).upstream_task_id
    return emulator.tasks()[task_id]


def _uploaded(emulator, url: str) -> dict:
    [found] = [o for o in emulator.uploads() if f"oss://{o['key']}" == url]
    return found


def test_edit_of_an_https_url_sends_the_url_as_given_and_bills_per_image(
        client, accounts, database, emulator):
    _, headers = accounts.headers()
    source = "https://example.com/pictures/cat.png"
    response = client.post(URL, headers=headers, json=edit(
        f"give the cat a hat {directive(duration_s=0)}", source, parameters={"n": 2}))
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["usage"] == {"image_count": 2}
    assert all(r["stored"] and r["url"].startswith("/api/jobs/")
               for r in data["output"]["results"])
    assert _task(emulator, database, data["job_id"])["inputs"] == [source]
    [usage] = usage_rows(database, data["job_id"])
    assert usage.kind.value == "image_edit" and str(usage.cost) == "0.28000000"
    job = client.get(f"/api/jobs/{data['job_id']}", headers=headers).json["data"]
    assert job["kind"] == "image_edit" and job["status"] == "succeeded"


def test_edit_of_an_uploaded_file_reaches_dashscope_through_the_file_upload(
        client, accounts, database, emulator):
    _, headers = accounts.headers()
    image = png(48, 48, (0, 200, 0))
    file_id = upload(client, headers, image).json["data"]["id"]
    response = client.post(URL, headers=headers, json=edit(
        f"make it blue {directive(duration_s=0)}", {"file_id": file_id},
        function="stylization_all", parameters={"strength": 0.7}))
    assert response.status_code == 200, response.json
    [sent] = _task(emulator, database, response.json["data"]["job_id"])["inputs"]
    assert sent.startswith("oss://")
    uploaded = _uploaded(emulator, sent)
    assert uploaded["sha256"] == hashlib.sha256(image).hexdigest()
    assert uploaded["model"] == "wanx2.1-imageedit"


def test_edit_of_a_previous_jobs_image(client, accounts, database, emulator):
    _, headers = accounts.headers()
    first = client.post("/api/bailian/generation", headers=headers, json={
        "model": "wanx-v1", "prompt": f"a castle {directive(duration_s=0)}"}).json["data"]
    stored = client.get(first["output"]["results"][0]["url"]).data
    response = client.post(URL, headers=headers, json=edit(
        f"at night {directive(duration_s=0)}", {"job_id": first["job_id"], "index": 0}))
    assert response.status_code == 200, response.json
    [sent] = _task(emulator, database, response.json["data"]["job_id"])["inputs"]
    assert _uploaded(emulator, sent)["sha256"] == hashlib.sha256(stored).hexdigest()


def test_mask_edit_sends_base_and_mask(client, accounts, database, emulator):
    _, headers = accounts.headers()
    base = upload(client, headers, png(64, 64)).json["data"]["id"]
    mask = upload(client, headers, png(64, 64, (255, 255, 255))).json["data"]["id"]
    response = client.post(URL, headers=headers, json=edit(
        f"a red door {directive(duration_s=0)}", {"file_id": base},
        function="description_edit_with_mask", mask_image={"file_id": mask}))
    assert response.status_code == 200, response.json
    sent = _task(emulator, database, response.json["data"]["job_id"])["inputs"]
    assert len(sent) == 2 and all(url.startswith("oss://") for url in sent)


def test_each_functions_parameters_are_validated(client, accounts):
    account, headers = accounts.headers()
    _, other = accounts.headers()
    strangers_file = upload(client, other, png()).json["data"]["id"]
    url = "https://example.com/a.png"
    cases = [
        (edit("x", url, function="no_such_function"), "function"),
        (edit("x", url, function="description_edit_with_mask"), "mask_image"),
        (edit("x", url, mask_image=url), "mask_image"),
        (edit("x", url, function="expand", parameters={"top_scale": 2.5}),
         "parameters.top_scale"),
        (edit("x", url, function="super_resolution", parameters={"upscale_factor": 5}),
         "parameters.upscale_factor"),
        (edit("x", url, function="colorization", parameters={"strength": 0.5}),
         "parameters.strength"),
        (edit("x", "http://example.com/a.png"), "base_image"),
        (edit("x", {"file_id": strangers_file}), "base_image"),
        (edit("x", {"job_id": "00000000-0000-0000-0000-000000000000"}), "base_image"),
        (edit("x", {"file_id": "a", "job_id": "b"}), "base_image"),
        (edit("x" * 801, url), "prompt"),
        (edit("x", url, parameters={"n": 5}), "parameters.n"),
    ]
    for body, field in cases:
        response = client.post(URL, headers=headers, json=body)
        assert response.status_code == 400, (body, response.json)
        fields = {e["field"].split(".")[0] if field == "base_image" else e["field"]
                  for e in response.json["errors"]}
        assert field in fields, (body, response.json)
    # ...and one valid request per rule above is accepted.
    for body in (edit("x", url, function="expand", parameters={"top_scale": 1.5}),
                 edit("x", url, function="super_resolution", parameters={"upscale_factor": 2}),
                 edit("x", url, function="description_edit", parameters={"strength": 0.3})):
        response = client.post(URL, headers={**headers, **ASYNC}, json=body)
        assert response.status_code == 202, (body, response.json)
    assert account["id"]


def test_an_upload_deleted_before_the_submit_fails_the_job_cleanly(client, accounts, database,
                                                                     settings):
    account, headers = accounts.headers()
    file = upload(client, headers, png()).json["data"]
    (settings.images_dir / "uploads" / str(account["id"]) / f"{file['id']}.png").unlink()
    response = client.post(URL, headers=headers, json=edit(
        f"gone {directive(duration_s=0)}", {"file_id": file["id"]}))
    job = wait_for_job(database, response.json["data"].get("id")
                       or response.json["data"]["job_id"], timeout=30)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "input_image_unavailable")
