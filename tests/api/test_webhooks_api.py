"""Webhooks through the API (no worker): the fields on submit, validation, the idempotency
fingerprint, what GET /api/jobs/<id> shows, the signing secret, and the delivery rows a
transition writes in its own transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from common.webhooks.models import WebhookDelivery

ASYNC = {"Prefer": "respond-async"}
CHAT = "/api/bailian/chat/completions"
HOOK = "https://hooks.example.com/bailian"


def chat(**extra) -> dict:
    return {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hi"}], **extra}


def deliveries(database, job_id: str) -> list[WebhookDelivery]:
    with database.session() as session:
        return list(session.scalars(select(WebhookDelivery)
                                    .where(WebhookDelivery.job_id == job_id)
                                    .order_by(WebhookDelivery.id)))


def test_the_webhook_is_part_of_the_job_and_shown(client, accounts):
    _, headers = accounts.headers()
    response = client.post(CHAT, json=chat(webhook=HOOK, webhook_events_filter=["start",
                                                                                "completed"]),
                           headers={**headers, **ASYNC})
    assert response.status_code == 202, response.json
    job = client.get(f"/api/jobs/{response.json['data']['id']}", headers=headers).json["data"]
    assert job["webhook"] == HOOK and job["webhook_events_filter"] == ["start", "completed"]
    for endpoint, body in (("/api/bailian/generation", {"model": "wanx-v1", "prompt": "fox",
                                                         "webhook": HOOK}),):
        data = client.post(endpoint, json=body, headers={**headers, **ASYNC}).json["data"]
        assert (data["webhook"], data["webhook_events_filter"]) == (HOOK, ["completed"])


def test_a_job_without_a_webhook_keeps_its_shape(client, accounts):
    _, headers = accounts.headers()
    job = client.post(CHAT, json=chat(), headers={**headers, **ASYNC}).json["data"]
    assert "webhook" not in job and "webhook_events_filter" not in job


def test_invalid_webhook_fields_are_400s_naming_them(client, accounts):
    _, headers = accounts.headers()
    cases = [({"webhook": "https://127.0.0.1/x"}, "webhook"),
             ({"webhook": "http://hooks.example.com/x"}, "webhook"),
             ({"webhook": 42}, "webhook"),
             ({"webhook": HOOK, "webhook_events_filter": ["done"]}, "webhook_events_filter.0"),
             ({"webhook": HOOK, "webhook_events_filter": []}, "webhook_events_filter"),
             ({"webhook_events_filter": ["start"]}, "webhook_events_filter")]
    for extra, field in cases:
        response = client.post(CHAT, json=chat(**extra), headers={**headers, **ASYNC})
        assert response.status_code == 400, (extra, response.json)
        assert field in [e["field"] for e in response.json["errors"]], (extra, response.json)


def test_the_webhook_is_part_of_the_idempotency_fingerprint(client, accounts):
    _, headers = accounts.headers()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(CHAT, json=chat(webhook=HOOK), headers={**headers, **ASYNC, **key})
    again = client.post(CHAT, json=chat(webhook=HOOK), headers={**headers, **ASYNC, **key})
    assert again.json["data"]["id"] == first.json["data"]["id"]
    for other in (chat(webhook=HOOK + "/2"), chat(),
                  chat(webhook=HOOK, webhook_events_filter=["start", "completed"])):
        response = client.post(CHAT, json=other, headers={**headers, **ASYNC, **key})
        assert response.status_code == 409, other


def test_the_signing_secret_is_stable_until_rotated(client, accounts):
    _, headers = accounts.headers()
    first = client.get("/api/webhooks/secret", headers=headers).json["data"]
    assert first["secret"].startswith("whsec_")
    assert first["rotated_at"] is None and first["previous_secret_expires_at"] is None
    assert client.get("/api/webhooks/secret", headers=headers).json["data"] == first
    rotated = client.post("/api/webhooks/secret/rotate", headers=headers).json["data"]
    assert rotated["secret"] != first["secret"] and rotated["rotated_at"]
    _, other = accounts.headers()
    assert client.get("/api/webhooks/secret", headers=other).json["data"]["secret"] not in (
        first["secret"], rotated["secret"])
    assert client.get("/api/webhooks/secret").status_code == 401


def test_the_ending_transition_writes_the_delivery_it_owes(client, accounts, database):
    _, headers = accounts.headers()
    job_id = client.post(CHAT, json=chat(webhook=HOOK), headers={**headers, **ASYNC}
                         ).json["data"]["id"]
    assert deliveries(database, job_id) == []
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code == 200
    [row] = deliveries(database, job_id)
    assert (row.event, row.status, row.attempt, row.url) == ("completed", "pending", 1, HOOK)
    assert row.message_id.startswith("msg_") and row.next_attempt_at is not None
    listed = client.get(f"/api/jobs/{job_id}/webhooks", headers=headers).json["data"]["items"]
    assert [i["webhook_id"] for i in listed] == [row.message_id]


def test_jobs_without_a_webhook_owe_no_delivery(client, accounts, database):
    _, headers = accounts.headers()
    job_id = client.post(CHAT, json=chat(), headers={**headers, **ASYNC}).json["data"]["id"]
    client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)
                              .where(WebhookDelivery.job_id == job_id)) == 0
    response = client.post(f"/api/jobs/{job_id}/webhooks/redeliver", headers=headers)
    assert response.status_code == 409 and response.json["code"] == 409


def test_redeliver_needs_a_finished_job(client, accounts):
    _, headers = accounts.headers()
    job_id = client.post(CHAT, json=chat(webhook=HOOK), headers={**headers, **ASYNC}
                         ).json["data"]["id"]
    response = client.post(f"/api/jobs/{job_id}/webhooks/redeliver", headers=headers)
    assert response.status_code == 409
