"""Which webhook URLs may be called (SSRF), how a delivery is signed (checked by the
standardwebhooks library, a third-party verifier), and that the sender connects to the
address it checked."""

from __future__ import annotations

import datetime as dt

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from common.webhooks import signing
from common.webhooks.addresses import UnsafeWebhook, WebhookPolicy
from common.webhooks.sending import WebhookSender
from tests.support.webhook_receiver import WebhookReceiver


def resolver(table: dict[str, list[str]], calls: list | None = None):
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return table[host]
    return resolve


@pytest.mark.parametrize(("addresses", "reason"), [
    (["127.0.0.1"], "loopback"), (["169.254.169.254"], "metadata"),
    (["100.100.100.200"], "metadata"), (["10.1.2.3"], "private"),
    (["192.168.0.10"], "private"), (["fe80::1"], "link-local"), (["::1"], "loopback"),
    (["::ffff:127.0.0.1"], "loopback"), (["224.0.0.1"], "multicast"),
    (["100.64.0.1"], "not a public address"), (["0.0.0.0"], "unspecified"),
    # One bad address among good ones is enough: the client could connect to any of them.
    (["93.184.215.14", "127.0.0.1"], "loopback"),
])
def test_names_resolving_to_internal_addresses_are_refused(addresses, reason):
    policy = WebhookPolicy(resolver=resolver({"hooks.example.com": addresses}))
    with pytest.raises(UnsafeWebhook, match=reason):
        policy.resolve("https://hooks.example.com/in")


def test_a_public_address_is_used_as_resolved():
    policy = WebhookPolicy(resolver=resolver({"hooks.example.com": ["93.184.215.14"]}))
    assert policy.resolve("https://hooks.example.com:8443/in?x=1") == \
        ("https", "hooks.example.com", 8443, "93.184.215.14")


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/", "https://127.0.0.1/", "https://169.254.169.254/latest/",
    "https://[::1]/", "https://localhost/", "https://a.localhost/", "https://db.internal/",
    "https://user:pw@hooks.example.com/", "ftp://hooks.example.com/", "not a url",
    "https://[::ffff:10.0.0.1]/"])
def test_what_submit_can_decide_without_dns_is_refused(url):
    with pytest.raises(UnsafeWebhook):
        WebhookPolicy().check_url(url)


def test_allow_listed_hosts_may_use_http_and_private_addresses():
    policy = WebhookPolicy(["localhost", "10.0.0.5"],
                           resolver=resolver({"localhost": ["127.0.0.1"],
                                              "10.0.0.5": ["10.0.0.5"]}))
    assert policy.resolve("http://localhost:8080/h")[3] == "127.0.0.1"
    assert policy.resolve("http://10.0.0.5/h")[3] == "10.0.0.5"


def test_signatures_verify_with_standardwebhooks_and_fail_when_tampered():
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    now = int(dt.datetime.now(dt.UTC).timestamp())
    body = b'{"id":"job","status":"succeeded"}'
    headers = signing.headers([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"id": "job", "status": "succeeded"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_two_secrets_sign_side_by_side():
    old, new = signing.new_secret(), signing.new_secret()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = signing.headers([new, old], "msg_2", now, b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(b"{}", headers) == Webhook(new).verify(b"{}", headers) == {}


def test_the_sender_connects_to_the_address_it_checked_without_a_second_lookup():
    receiver = WebhookReceiver()
    try:
        calls: list[str] = []
        # A name no DNS server knows: the send can only succeed through the checked address.
        policy = WebhookPolicy(["hooks.test"], resolver=resolver(
            {"hooks.test": ["127.0.0.1"]}, calls))
        sent = WebhookSender(policy, timeout=3).post(
            f"http://hooks.test:{receiver.port}/pinned", b"{}", {"webhook-id": "msg_3"})
        assert sent.status == 200 and sent.error is None
        assert calls == ["hooks.test"]  # one resolution per send
        [got] = receiver.at("/pinned")
        assert got.headers["host"] == f"hooks.test:{receiver.port}"
    finally:
        receiver.close()


def test_the_sender_follows_no_redirect_and_reports_refusals():
    receiver = WebhookReceiver()
    try:
        receiver.script("/moved", [302])
        policy = WebhookPolicy(["localhost"])
        sender = WebhookSender(policy, timeout=3)
        assert sender.post(receiver.url("/moved"), b"{}", {}).status == 302
        refused = WebhookSender(WebhookPolicy(), timeout=3).post(
            receiver.url("/moved"), b"{}", {})
        assert refused.refused and "https" in refused.error
    finally:
        receiver.close()


def test_an_unsendable_url_is_a_failed_attempt_not_a_crash():
    policy = WebhookPolicy(["localhost"], resolver=resolver({"localhost": ["127.0.0.1"]}))
    sent = WebhookSender(policy, timeout=1).post("http://localhost:9/caf\u00e9 x", b"{}", {})
    assert sent.status is None and sent.error and not sent.refused
