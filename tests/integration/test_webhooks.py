"""Signed webhooks end to end: the Flask app, a real Celery worker and beat, MariaDB, Redis,
the emulator, and a real receiving HTTP server that verifies every delivery with the
`standardwebhooks` library (a third-party verifier, not the platform's code)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import uuid

import pytest
import redis as redis_lib
from standardwebhooks import Webhook

from tests.support import processes
from tests.support.jobs import directive, wait_for_job, wait_until
from tests.support.stack import REDIS_HOST, REDIS_PORT, redis_db
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("platform")
CHAT = "/api/bailian/chat/completions"
GENERATION = "/api/bailian/generation"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def hook(receiver):
    """A fresh path on the receiver, and its URL."""
    path = f"/hooks/{uuid.uuid4().hex[:12]}"
    return path, receiver.url(path)


def chat(content: str, **extra) -> dict:
    return {"model": "qwen-plus", "messages": [{"role": "user", "content": content}], **extra}


def secret_of(client, headers) -> str:
    response = client.get("/api/webhooks/secret", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]["secret"]


def verified(secret: str, delivery) -> dict:
    """The delivery's payload, verified by standardwebhooks (raises if the signature fails)."""
    return Webhook(secret).verify(delivery.body, delivery.headers)


def attempts(client, headers, job_id: str) -> list[dict]:
    response = client.get(f"/api/jobs/{job_id}/webhooks", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]["items"]


def settled_attempts(client, headers, job_id: str, count: int) -> list[dict]:
    return wait_until(lambda: (items := attempts(client, headers, job_id)) and len(items) >= count
                      and all(i["status"] != "pending" for i in items) and items, timeout=30)


def test_a_completed_chat_job_is_posted_signed_as_get_shows_it(client, accounts, receiver,
                                                               hook):
    _, headers = accounts.headers()
    path, url = hook
    accepted = client.post(CHAT, json=chat("hook me", webhook=url), headers={**headers, **ASYNC})
    assert accepted.status_code == 202, accepted.json
    job_id = accepted.json["data"]["id"]
    assert accepted.json["data"]["webhook"] == url
    assert accepted.json["data"]["webhook_events_filter"] == ["completed"]
    [delivery] = receiver.wait_for(path)
    payload = verified(secret_of(client, headers), delivery)
    shown = client.get(f"/api/jobs/{job_id}", headers=headers).json["data"]
    assert payload == shown
    assert payload["status"] == "succeeded" and payload["result"]["job_id"] == job_id
    assert delivery.webhook_id.startswith("msg_")
    assert delivery.headers["webhook-signature"].startswith("v1,")
    [attempt] = settled_attempts(client, headers, job_id, 1)
    assert attempt["webhook_id"] == delivery.webhook_id
    assert (attempt["status"], attempt["response_code"], attempt["attempt"]) == \
        ("delivered", 200, 1)
    assert attempt["event"] == "completed" and attempt["latency_ms"] is not None


def test_an_image_job_is_posted_once_its_images_are_stored(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    accepted = client.post(GENERATION, json={"model": "wanx-v1", "prompt": "a fox",
                                             "webhook": url},
                           headers={**headers, **ASYNC})
    assert accepted.status_code == 202, accepted.json
    job_id = accepted.json["data"]["id"]
    [delivery] = receiver.wait_for(path, timeout=90)
    payload = verified(secret_of(client, headers), delivery)
    assert payload["status"] == "succeeded"
    [image] = payload["result"]["output"]["results"]
    link = image["url"]
    assert image["stored"] is True and f"/api/jobs/{job_id}/images/0?" in link
    shown = client.get(f"/api/jobs/{job_id}", headers=headers).json["data"]
    # Signed links carry their own expiry, so only they may differ.
    for job in (payload, shown):
        for entry in job["result"]["output"]["results"]:
            entry["url"] = entry["url"].split("?")[0]
    assert payload == shown
    # The link the webhook carried works, without a token.
    assert client.get(link).status_code == 200


def test_start_is_delivered_when_filtered_in(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    accepted = client.post(CHAT, json=chat(f"both {directive(latency_ms=2000)}", webhook=url,
                                           webhook_events_filter=["start", "completed"]),
                           headers={**headers, **ASYNC})
    job_id = accepted.json["data"]["id"]
    deliveries = receiver.wait_for(path, 2)
    secret = secret_of(client, headers)
    payloads = [verified(secret, d) for d in deliveries]
    assert {p["id"] for p in payloads} == {job_id}
    assert len({d.webhook_id for d in deliveries}) == 2
    items = settled_attempts(client, headers, job_id, 2)
    assert [(i["event"], i["status"]) for i in items] == \
        [("start", "delivered"), ("completed", "delivered")]
    # The start was sent while the upstream call was still running.
    assert payloads[0]["status"] == "running" and payloads[1]["status"] == "succeeded"


def test_a_receiver_failing_three_times_gets_the_same_webhook_id_four_times(
        client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    receiver.script(path, [500, 503, 502, 200])
    job_id = client.post(CHAT, json=chat("flaky receiver", webhook=url),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    deliveries = receiver.wait_for(path, 4)
    assert len({d.webhook_id for d in deliveries}) == 1
    secret = secret_of(client, headers)
    assert all(verified(secret, d)["id"] == job_id for d in deliveries)
    items = settled_attempts(client, headers, job_id, 4)
    assert [(i["attempt"], i["status"], i["response_code"]) for i in items] == [
        (1, "failed", 500), (2, "failed", 503), (3, "failed", 502), (4, "delivered", 200)]
    assert len(receiver.at(path)) == 4


def test_410_stops_the_retries(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    receiver.script(path, [410])
    job_id = client.post(CHAT, json=chat("gone receiver", webhook=url),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    receiver.wait_for(path)
    [item] = settled_attempts(client, headers, job_id, 1)
    assert (item["status"], item["response_code"]) == ("gone", 410)
    with pytest.raises(AssertionError):  # for several retry intervals of the test schedule
        receiver.wait_for(path, 2, timeout=2.5)


def test_a_worker_killed_during_the_delivery_still_delivers(client, accounts, receiver, hook,
                                                            platform):
    _, headers = accounts.headers()
    path, url = hook
    release = receiver.hold(path)
    job_id = client.post(CHAT, json=chat("kill the sender", webhook=url),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    [first] = receiver.wait_for(path)  # the worker is inside the send
    platform.worker.kill(signal.SIGKILL)
    release.set()
    platform.worker = processes.worker(platform.env, platform.log_dir)
    deliveries = receiver.wait_for(path, 2, timeout=60)  # the sweeper, once the lease is over
    assert deliveries[1].webhook_id == first.webhook_id
    verified(secret_of(client, headers), deliveries[1])
    items = settled_attempts(client, headers, job_id, 1)
    assert items[-1]["status"] == "delivered"


def test_redis_flushed_before_the_delivery_still_delivers(client, accounts, receiver, hook,
                                                          platform, database):
    _, headers = accounts.headers()
    path, url = hook
    platform.worker.stop()
    try:
        job_id = client.post(CHAT, json=chat("never run", webhook=url),
                             headers={**headers, **ASYNC}).json["data"]["id"]
        assert client.post(f"/api/jobs/{job_id}/cancel", headers=headers).status_code == 200
        # The delivery's message is in the broker; Redis loses it (and everything else).
        for db in (redis_db("app"), redis_db("broker")):
            redis_lib.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    finally:
        platform.worker = processes.worker(platform.env, platform.log_dir)
    [delivery] = receiver.wait_for(path, timeout=90)
    _, headers = accounts.headers()  # the flush took the login's cached state, not its truth
    payload = Webhook(_secret_for_job(client, accounts, database, job_id)).verify(
        delivery.body, delivery.headers)
    assert payload["id"] == job_id and payload["status"] == "canceled"


def _secret_for_job(client, accounts, database, job_id: str) -> str:
    from sqlalchemy import select

    from common.webhooks.models import WebhookSecret

    job = wait_for_job(database, job_id)
    with database.session() as session:
        return session.scalars(select(WebhookSecret.secret).where(
            WebhookSecret.user_id == job.user_id)).one()


@pytest.mark.parametrize("url", ["https://169.254.169.254/latest/meta-data/",
                                 "https://127.0.0.1/hook", "https://[::1]/hook",
                                 "https://10.0.0.8/hook", "https://metadata.localhost./hook",
                                 "http://example.com/hook", "ftp://example.com/hook"])
def test_unsafe_webhooks_are_refused_at_submit(client, accounts, url):
    _, headers = accounts.headers()
    response = client.post(CHAT, json=chat("unsafe", webhook=url), headers={**headers, **ASYNC})
    assert response.status_code == 400, response.json
    assert [e["field"] for e in response.json["errors"]] == ["webhook"]


def _loopback_name() -> str | None:
    """A host name (not allow-listed) that resolves to a loopback or private address."""
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        if name in ("localhost",):
            continue
        try:
            address = socket.gethostbyname(name)
        except OSError:
            continue
        if not ipaddress.ip_address(address).is_global:
            return name
    return None


def test_a_name_resolving_to_loopback_is_refused_at_send_time(client, accounts, receiver):
    name = _loopback_name()
    if name is None or name.endswith((".localhost", ".local", ".internal")):
        pytest.skip("no host name here resolves to a loopback address")
    _, headers = accounts.headers()
    url = f"https://{name}:{receiver.port}/hooks/rebound"
    job_id = client.post(CHAT, json=chat("rebinding", webhook=url),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    [item] = settled_attempts(client, headers, job_id, 1)
    assert item["status"] == "refused" and item["response_code"] is None
    assert "resolves to" in item["error"] and "address" in item["error"]
    assert receiver.at("/hooks/rebound") == []


def test_deliveries_verify_with_both_secrets_after_a_rotation(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    old = secret_of(client, headers)
    rotated = client.post("/api/webhooks/secret/rotate", headers=headers)
    assert rotated.status_code == 200
    new = rotated.json["data"]["secret"]
    assert new != old and new.startswith("whsec_")
    assert rotated.json["data"]["previous_secret_expires_at"] is not None
    assert secret_of(client, headers) == new
    client.post(CHAT, json=chat("rotated", webhook=url), headers={**headers, **ASYNC})
    [delivery] = receiver.wait_for(path)
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, delivery) == verified(new, delivery)


def test_another_users_deliveries_are_not_found(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    job_id = client.post(CHAT, json=chat("mine", webhook=url),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    receiver.wait_for(path)
    _, stranger = accounts.headers()
    assert client.get(f"/api/jobs/{job_id}/webhooks", headers=stranger).status_code == 404
    assert client.post(f"/api/jobs/{job_id}/webhooks/redeliver",
                       headers=stranger).status_code == 404
    assert len(receiver.at(path)) == 1


def test_redeliver_queues_a_fresh_delivery(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    job_id = client.post(CHAT, json=chat("again", webhook=url),
                         headers={**headers, **ASYNC}).json["data"]["id"]
    [first] = receiver.wait_for(path)
    response = client.post(f"/api/jobs/{job_id}/webhooks/redeliver", headers=headers)
    assert response.status_code == 202, response.json
    deliveries = receiver.wait_for(path, 2)
    assert deliveries[1].webhook_id == response.json["data"]["webhook_id"] != first.webhook_id
    assert verified(secret_of(client, headers), deliveries[1])["id"] == job_id


def test_v1_chat_completions_takes_a_webhook_too(client, accounts, receiver, hook):
    _, headers = accounts.headers()
    path, url = hook
    response = client.post("/v1/chat/completions", json=chat("openai", webhook=url),
                           headers=headers)
    assert response.status_code == 200, response.json
    [delivery] = receiver.wait_for(path)
    payload = verified(secret_of(client, headers), delivery)
    assert payload["id"] == response.headers["X-Job-ID"] and payload["status"] == "succeeded"
