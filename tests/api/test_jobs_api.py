"""The jobs API: ownership (404 for anyone else), listing with filters and cursors, cancel."""

from __future__ import annotations

import pytest

from common.jobs import queries
from common.jobs.models import JobKind, JobStatus

ASYNC = {"Prefer": "respond-async"}
CHAT = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hi"}]}


def _submit(client, headers) -> dict:
    response = client.post("/api/bailian/chat/completions", json=CHAT,
                           headers={**headers, **ASYNC})
    assert response.status_code == 202
    return response.json["data"]


def test_another_users_job_is_404_on_every_job_route(client, accounts, app):
    _, owner = accounts.headers()
    _, stranger = accounts.headers()
    job = _submit(client, owner)
    for rule in app.url_map.iter_rules():
        # The console's job pages sign in by session (tests/browser covers them).
        if "<job_id>" not in rule.rule or rule.endpoint.startswith("console."):
            continue
        url = rule.rule.replace("<job_id>", job["id"]).replace("<int:index>", "0")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url, method=method, headers=stranger)
            assert response.status_code == 404, (method, url)
            assert response.json["message"] == "Job not found"


def test_admin_may_read_any_job(client, accounts):
    _, owner = accounts.headers()
    _, admin = accounts.headers("admin")
    job = _submit(client, owner)
    assert client.get(f"/api/jobs/{job['id']}", headers=admin).status_code == 200


@pytest.mark.parametrize("job_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000",
                                    "' OR 1=1 --"])
def test_unknown_or_malformed_job_ids_are_404(client, accounts, job_id):
    _, headers = accounts.headers()
    assert client.get(f"/api/jobs/{job_id}", headers=headers).status_code == 404


def test_job_shape_is_stable(client, accounts):
    _, headers = accounts.headers()
    job = client.get(f"/api/jobs/{_submit(client, headers)['id']}", headers=headers).json["data"]
    assert set(job) == {"id", "kind", "model", "status", "created_at", "started_at",
                        "finished_at", "deadline_at", "attempts", "result", "error", "usage",
                        "cost", "links"}


def test_listing_is_newest_first_with_cursor_pages_and_filters(client, accounts, lifecycle):
    _account, headers = accounts.headers()
    ids = [_submit(client, headers)["id"] for _ in range(5)]
    lifecycle.fail(lifecycle.claim(ids[0], lease_seconds=60), code="x", message="y")

    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/jobs", query_string=query, headers=headers).json["data"]
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))

    failed = client.get("/api/jobs?status=failed", headers=headers).json["data"]["items"]
    assert [j["id"] for j in failed] == [ids[0]]
    chats = client.get("/api/jobs?kind=chat&limit=100", headers=headers).json["data"]["items"]
    assert len(chats) == 5


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=101", "limit"),
                                          ("status=done", "status"), ("kind=audio", "kind"),
                                          ("cursor=%%%", "cursor"), ("colour=red", "colour")])
def test_listing_rejects_bad_parameters(client, accounts, query, field):
    _, headers = accounts.headers()
    response = client.get(f"/api/jobs?{query}", headers=headers)
    assert response.status_code == 400
    assert response.json["errors"][0]["field"] == field


def test_cancel_a_queued_job_then_cancel_again_is_409(client, accounts, database, lifecycle):
    _, headers = accounts.headers()
    job = _submit(client, headers)
    # Unfinished: the poller is told when to ask again; finished: nothing more to ask.
    assert client.get(f"/api/jobs/{job['id']}", headers=headers).headers["Retry-After"] == "1"
    canceled = client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert canceled.status_code == 200
    assert canceled.json["data"]["status"] == "canceled"
    again = client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert again.status_code == 409
    assert "Retry-After" not in client.get(f"/api/jobs/{job['id']}", headers=headers).headers
    # A late worker cannot revive it: terminal states never change.
    assert lifecycle.claim(job["id"], lease_seconds=5) is None
    with database.connect() as conn:
        assert queries.find(conn, job["id"]).status == JobStatus.CANCELED


def test_cursor_from_listing_is_opaque_but_tamper_proof(client, accounts):
    _, headers = accounts.headers()
    response = client.get("/api/jobs?cursor=eyJub3QiOiAiYSBjdXJzb3IifQ", headers=headers)
    assert response.status_code == 400


def test_kind_filter_uses_enum_values():
    assert {k.value for k in JobKind} == {"chat", "image", "image_edit", "video", "embedding"}
