"""Usage reports: a user's totals, per model or per day; admins may see anyone or everyone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from common.billing.pricing import Usage, cost_of
from common.infra.orm import utcnow
from common.jobs import submission
from common.jobs.lifecycle import Billed
from common.jobs.models import JobKind
from common.jobs.results import ChatCompletion
from common.upstream.interface import ChatResult


def _billed_job(lifecycle, settings, user_id: int, model: str, tokens: tuple[int, int]) -> None:
    job, _ = submission.submit(lifecycle=lifecycle, settings=settings, user_id=user_id,
                               kind=JobKind.CHAT, model=model, request={"messages": []})
    claim = lifecycle.claim(job.id, lease_seconds=60)
    usage = Usage(input_tokens=tokens[0], output_tokens=tokens[1], total_tokens=sum(tokens))
    answer = ChatResult(message={"role": "assistant", "content": "ok"}, finish_reason="stop",
                        usage=usage)
    lifecycle.finish(claim, Billed(
        result=ChatCompletion.of(job_id=job.id, model=model, answer=answer), usage=usage,
        cost=cost_of(settings.prices, model, usage), currency="CNY"))


def test_totals_and_groups_for_the_caller(client, accounts, lifecycle, settings):
    account, headers = accounts.headers()
    _billed_job(lifecycle, settings, account["id"], "qwen-plus", (1000, 500))
    _billed_job(lifecycle, settings, account["id"], "qwen-plus", (200, 100))
    _billed_job(lifecycle, settings, account["id"], "qwen-max", (1000, 1000))

    report = client.get("/api/usage?group_by=model", headers=headers).json["data"]
    assert report["currency"] == "CNY"
    assert report["totals"]["requests"] == 3
    assert report["totals"]["input_tokens"] == 2200
    assert report["totals"]["output_tokens"] == 1600
    plus_cost = Decimal("1.2") * Decimal("0.0008") + Decimal("0.6") * Decimal("0.002")
    max_cost = Decimal("0.0024") + Decimal("0.0096")
    assert report["totals"]["cost"] == pytest.approx(float(plus_cost + max_cost), abs=1e-8)
    groups = {g["model"]: g for g in report["groups"]}
    assert groups["qwen-plus"]["requests"] == 2 and groups["qwen-max"]["requests"] == 1

    by_day = client.get("/api/usage?group_by=day", headers=headers).json["data"]["groups"]
    assert by_day == [{**by_day[0], "day": utcnow().date().isoformat()}]


def test_window_excludes_other_periods(client, accounts, lifecycle, settings):
    account, headers = accounts.headers()
    _billed_job(lifecycle, settings, account["id"], "qwen-turbo", (10, 10))
    tomorrow = (utcnow() + dt.timedelta(days=1)).date().isoformat()
    later = client.get(f"/api/usage?start={tomorrow}", headers=headers)
    assert later.status_code == 400  # start after the default end (now)
    future = client.get(f"/api/usage?start={tomorrow}&end=2999-01-01", headers=headers)
    assert future.json["data"]["totals"]["requests"] == 0


def test_users_cannot_see_others_but_admins_can(client, accounts, lifecycle, settings):
    alice, _alice_headers = accounts.headers()
    _, admin_headers = accounts.headers("admin")
    _billed_job(lifecycle, settings, alice["id"], "qwen-plus", (10, 10))
    _, bob_headers = accounts.headers()
    assert client.get(f"/api/usage?user_id={alice['id']}",
                      headers=bob_headers).status_code == 403
    assert client.get("/api/usage?all=true", headers=bob_headers).status_code == 403
    as_admin = client.get(f"/api/usage?user_id={alice['id']}", headers=admin_headers)
    assert as_admin.json["data"]["totals"]["requests"] == 1
    everyone = client.get("/api/usage?all=true", headers=admin_headers).json["data"]
    assert everyone["all_users"] is True and everyone["totals"]["requests"] >= 1


@pytest.mark.parametrize("query", ["group_by=hour", "start=yesterday", "user_id=abc",
                                   "end=0001-01-01", "start=9999-12-31T23:59:59",
                                   "start=2021-01-01&end=2020-01-01"])
def test_bad_usage_queries_are_400(client, accounts, query):
    _, headers = accounts.headers()
    assert client.get(f"/api/usage?{query}", headers=headers).status_code == 400
