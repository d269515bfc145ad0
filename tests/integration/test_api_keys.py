"""API keys, budgets and token limits through the app, with a real worker, MariaDB and Redis.

(The cross-process proofs, two gunicorn instances with two workers each, are in
tests/e2e/test_keys_across_instances.py.)"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from decimal import Decimal

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from common.accounts.models import ApiKey, Role
from common.billing.budgets import Budgets, Payer
from common.billing.models import BudgetCounter, JobCharge, UsageRecord
from common.errors import BudgetExceeded
from common.infra.orm import utcnow
from common.jobs import submission
from common.jobs.models import Job, JobKind
from tests.support.jobs import wait_for_job, wait_until

pytestmark = pytest.mark.usefixtures("platform")
CHAT = "/api/bailian/chat/completions"
V1 = "/v1/chat/completions"
ASYNC = {"Prefer": "respond-async"}


def chat(content: str = "hi", **extra) -> dict:
    return {"model": "qwen-turbo", "messages": [{"role": "user", "content": content}],
            **extra}


def make_key(client, headers, **fields) -> dict:
    response = client.post("/api/keys", json={"name": "ci", **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["data"]


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_a_key_is_shown_once_stored_as_a_keyed_hash_and_listed_without_its_secret(
        client, accounts, database):
    _, login = accounts.headers()
    created = make_key(client, login, models=["qwen-turbo"], rpm_limit=5, tpm_limit=9000,
                       budget={"amount": 2, "period": "day"})
    secret = created["key"]
    assert secret.startswith("bk_") and len(secret) >= 3 + 43  # 256 bits, URL-safe
    assert created["prefix"] == secret[:8] and created["last_four"] == secret[-4:]
    listed = client.get("/api/keys", headers=login).json["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and secret not in str(listed)
    assert listed[0]["budget"] == {"amount": 2.0, "period": "day"}
    assert listed[0]["spend_this_period"] == 0.0
    with database.session() as session:
        row = session.get(ApiKey, created["id"])
        assert secret not in (row.secret_hash, row.prefix) and len(row.secret_hash) == 64
    patched = client.patch(f"/api/keys/{created['id']}", headers=login,
                           json={"name": "renamed", "rpm_limit": None})
    assert patched.status_code == 200
    assert (patched.json["data"]["name"], patched.json["data"]["rpm_limit"]) == ("renamed", None)


def test_a_key_runs_jobs_as_its_user_and_its_usage_row_names_it(client, accounts, database):
    account, login = accounts.headers()
    key = make_key(client, login)
    done = client.post(CHAT, json=chat("paid by key"), headers=bearer(key["key"]))
    assert done.status_code == 200, done.json
    job_id = done.headers["X-Job-ID"]
    with database.session() as session:
        job = session.get(Job, job_id)
        row = session.scalar(select(UsageRecord).where(UsageRecord.job_id == job_id))
        charge = session.get(JobCharge, job_id)
    assert job.user_id == account["id"] and row.api_key_id == key["id"]
    assert charge.outcome == "settled" and charge.cost == row.cost
    assert client.get(f"/api/jobs/{job_id}", headers=bearer(key["key"])).status_code == 200
    by_key = client.get("/api/usage?group_by=key", headers=login).json["data"]
    assert [g["key"] for g in by_key["groups"]] == [key["id"]]
    exported = client.get("/api/usage", headers={**login, "Accept": "text/csv"})
    assert exported.mimetype == "text/csv"
    [line] = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert line["job_id"] == job_id and line["api_key_id"] == str(key["id"])


def test_a_key_cannot_manage_keys_users_or_itself(client, accounts):
    _, login = accounts.headers("admin")
    key = make_key(client, login)["key"]
    assert client.post("/api/keys", json={"name": "x"}, headers=bearer(key)).status_code == 403
    assert client.get("/api/keys", headers=bearer(key)).status_code == 403
    assert client.get("/api/admin/users", headers=bearer(key)).status_code == 403
    assert client.get("/api/jobs", headers=bearer(key)).status_code == 200


def test_revoked_key_is_401_and_stays_401_after_redis_is_flushed(client, accounts, settings):
    _, login = accounts.headers()
    key = make_key(client, login)
    assert client.get("/api/jobs", headers=bearer(key["key"])).status_code == 200
    assert client.delete(f"/api/keys/{key['id']}", headers=login).status_code == 200
    assert client.get("/api/jobs", headers=bearer(key["key"])).status_code == 401
    redis_lib.Redis.from_url(settings.redis_connection_url).flushdb()
    refused = client.get("/api/jobs", headers=bearer(key["key"]))
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.post(V1, json=chat(), headers=bearer(key["key"])).json["error"]["code"] == \
        "invalid_api_key"


def test_expired_key_and_key_of_a_deactivated_user_are_401(client, accounts):
    account, login = accounts.headers()
    soon = (utcnow() + dt.timedelta(seconds=1.5)).isoformat() + "Z"
    expiring = make_key(client, login, expires_at=soon)["key"]
    lasting = make_key(client, login)["key"]
    assert client.get("/api/jobs", headers=bearer(expiring)).status_code == 200
    time.sleep(1.6)
    assert client.get("/api/jobs", headers=bearer(expiring)).status_code == 401
    assert client.get("/api/jobs", headers=bearer(lasting)).status_code == 200
    _, admin = accounts.headers("admin")
    assert client.patch(f"/api/admin/users/{account['id']}", json={"active": False},
                        headers=admin).status_code == 200
    assert client.get("/api/jobs", headers=bearer(lasting)).status_code == 401
    assert client.get("/api/jobs", headers=bearer("bk_not-a-key")).status_code == 401


def test_a_model_outside_the_allow_list_is_403_on_api_and_model_not_found_on_v1(
        client, accounts, database):
    account, login = accounts.headers()
    key = make_key(client, login, models=["qwen-plus"])["key"]
    refused = client.post(CHAT, json=chat(), headers={**bearer(key), **ASYNC})
    assert refused.status_code == 403 and refused.json["code"] == 403
    on_v1 = client.post(V1, json=chat(), headers=bearer(key))
    assert on_v1.status_code == 404 and on_v1.json["error"]["code"] == "model_not_found"
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.user_id == account["id"])) == 0
    allowed = client.post(CHAT, json={**chat(), "model": "qwen-plus"},
                          headers={**bearer(key), **ASYNC})
    assert allowed.status_code == 202


def test_budget_refusal_is_402_on_api_and_429_insufficient_quota_on_v1(client, accounts):
    _, login = accounts.headers()
    # A worst case of qwen-turbo's 8192 output tokens is 0.0049 CNY: this covers none.
    key = make_key(client, login, budget={"amount": "0.001", "period": "month"})["key"]
    refused = client.post(CHAT, json=chat(), headers={**bearer(key), **ASYNC})
    assert refused.status_code == 402, refused.json
    assert "budget" in refused.json["message"] and refused.headers["X-Budget-Reset"]
    on_v1 = client.post(V1, json=chat(), headers=bearer(key))
    assert on_v1.status_code == 429
    assert on_v1.json["error"]["code"] == "insufficient_quota"
    assert on_v1.json["error"]["type"] == "insufficient_quota"
    assert "resets at" in on_v1.json["error"]["message"]
    assert on_v1.headers["x-should-retry"] == "false" and int(on_v1.headers["Retry-After"]) > 0
    small = client.post(CHAT, json=chat(max_tokens=1), headers={**bearer(key), **ASYNC})
    assert small.status_code == 202  # its worst case fits


def test_usage_reports_remaining_budget_and_reservations_in_flight(client, accounts, database):
    _account, login = accounts.headers()
    key = make_key(client, login, budget={"amount": 1, "period": "day"})
    job = client.post(CHAT, json=chat("slow [[emulator: latency_ms=1500]]", max_tokens=100),
                      headers={**bearer(key["key"]), **ASYNC}).json["data"]
    report = client.get("/api/usage", headers=bearer(key["key"])).json["data"]["budget"]
    assert report["key"]["reserved"] > 0
    assert report["key"]["remaining"] == pytest.approx(1 - report["key"]["reserved"])
    assert report["user"]["amount"] == 100.0  # the default tier's monthly budget
    wait_for_job(database, job["id"])
    after = client.get("/api/usage", headers=bearer(key["key"])).json["data"]["budget"]
    with database.session() as session:
        cost = session.scalar(select(UsageRecord.cost).where(UsageRecord.job_id == job["id"]))
    assert after["key"]["reserved"] == 0 and after["key"]["spent"] == float(cost)


def test_tpm_refuses_the_request_that_would_pass_it_and_recovers_as_the_window_slides(
        settings, accounts, client):
    from web.app import create_app

    windowed = create_app(settings.model_copy(update={"token_limit_window_seconds": 2})
                          ).test_client()
    _, login = accounts.headers()
    key = make_key(client, login, tpm_limit=1100)["key"]
    # Slow jobs: none finishes (and is corrected to its real usage) inside the burst.
    body = chat("x [[emulator: latency_ms=4000]]", max_tokens=300)
    reserved = len(body["messages"][0]["content"].encode()) + 8 + 300
    first = windowed.post(CHAT, json=body, headers={**bearer(key), **ASYNC})
    assert first.status_code == 202
    assert first.headers["X-RateLimit-Limit-Tokens"] == "1100"
    assert first.headers["X-RateLimit-Remaining-Tokens"] == str(1100 - reserved)
    assert first.headers["X-RateLimit-Reset-Tokens"].endswith("s")
    assert [windowed.post(CHAT, json=body, headers={**bearer(key), **ASYNC}).status_code
            for _ in range(3)] == [202, 202, 429]  # a fourth 339 would pass 1100
    time.sleep(2.1)
    assert windowed.post(CHAT, json=body, headers={**bearer(key), **ASYNC}).status_code == 202


def test_period_rollover_resets_spend_with_an_injected_clock(settings, lifecycle, accounts,
                                                            database):
    account = accounts.create()
    now = [dt.datetime(2031, 1, 31, 23, 59, tzinfo=dt.UTC)]
    budgets = Budgets(settings, clock=lambda: now[0])
    with database.session() as session:
        from common.accounts.models import User

        user = session.get(User, account["id"])
        user.budget_amount, user.budget_period = Decimal("0.01"), "day"
    payer = Payer(user_id=account["id"], role=Role.DEFAULT)
    # Slow jobs: the worker does not settle one (to its small real cost) during the test.
    request = {"messages": chat("[[emulator: latency_ms=5000]]")["messages"], "parameters": {}}
    estimate = budgets.estimate(JobKind.CHAT, "qwen-turbo", request)

    def submit():
        plan = budgets.plan(database, payer, estimate)
        return submission.submit(
            lifecycle=lifecycle, settings=settings, user_id=account["id"], kind=JobKind.CHAT,
            model="qwen-turbo", request=request,
            charge=lambda conn, job_id, at: budgets.reserve(conn, job_id=job_id, plan=plan,
                                                            now=at))

    submit()
    submit()  # 2 x 0.0049 fit in 0.01
    with pytest.raises(BudgetExceeded, match="resets at 2031-02-01T00:00:00Z"):
        submit()
    now[0] = dt.datetime(2031, 2, 1, 0, 0, 1, tzinfo=dt.UTC)  # the next day
    submit()
    with database.session() as session:
        periods = dict(session.execute(
            select(BudgetCounter.period, BudgetCounter.reserved)
            .where(BudgetCounter.owner_id == account["id"], BudgetCounter.scope == "user")
        ).all())
    # The user's day counters (the month's exist too: the budget was read in the submit's
    # transaction, so both were made ready); the new day holds only the new job.
    assert periods["2031-01-31"] == 2 * estimate.cost
    assert periods["2031-02-01"] == estimate.cost and periods["2031-02"] == 0


def test_cancel_releases_the_reservation_exactly_once(client, accounts, database, lifecycle):
    _account, login = accounts.headers()
    key = make_key(client, login, budget={"amount": 1, "period": "month"})
    job = client.post(CHAT, json=chat("[[emulator: latency_ms=3000]]"),
                      headers={**bearer(key["key"]), **ASYNC}).json["data"]
    # Cancel while the upstream call is in flight (a cancel before the worker's claim would
    # leave nothing to bill): the claim comes just before the call, which lasts 3 s.
    wait_until(lambda: client.get(f"/api/jobs/{job['id']}", headers=login)
               .json["data"]["status"] == "running", timeout=20,
               message="the worker never claimed the job")
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=login).status_code == 200
    with database.session() as session:
        charge = session.get(JobCharge, job["id"])
        assert charge.outcome == "released"
    wait_until(lambda: _usage_cost(database, job["id"]) is not None, timeout=20,
               message="the canceled job's upstream call was never recorded")
    counter = _counter(database, "key", key["id"])
    assert counter.reserved == 0
    assert counter.spent == _usage_cost(database, job["id"])  # still billed, counted once


def _usage_cost(database, job_id):
    with database.session() as session:
        return session.scalar(select(UsageRecord.cost).where(UsageRecord.job_id == job_id))


def _counter(database, scope, owner_id) -> BudgetCounter:
    with database.session() as session:
        return session.scalars(select(BudgetCounter).where(
            BudgetCounter.scope == scope, BudgetCounter.owner_id == owner_id)).one()


def test_operators_create_list_and_revoke_keys_from_the_cli(app, client, accounts):
    account = accounts.create()
    runner = app.test_cli_runner()
    made = runner.invoke(args=["users", "keys", "create", "--username", account["username"],
                               "--name", "cron", "--model", "qwen-turbo", "--budget",
                               "5/day", "--tpm-limit", "50000"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    key_id = int(made.output.split("id=")[1].split()[0])
    assert client.get("/api/jobs", headers=bearer(secret)).status_code == 200
    listed = runner.invoke(args=["users", "keys", "list", "--username", account["username"]])
    assert f"{secret[:8]}...{secret[-4:]}" in listed.output and secret not in listed.output
    assert runner.invoke(args=["users", "keys", "revoke", "--id", str(key_id)]).exit_code == 0
    assert client.get("/api/jobs", headers=bearer(secret)).status_code == 401
    bad = runner.invoke(args=["users", "keys", "create", "--username", account["username"],
                              "--name", "x", "--budget", "lots"])
    assert bad.exit_code != 0 and "--budget" in bad.output


def test_an_admin_set_user_budget_applies_from_the_next_request(client, accounts):
    account, login = accounts.headers()
    _, admin = accounts.headers("admin")
    assert client.post(CHAT, json=chat(), headers={**login, **ASYNC}).status_code == 202
    assert client.patch(f"/api/admin/users/{account['id']}", headers=admin, json={
        "budget": {"amount": "0.001", "period": "day"}}).status_code == 200
    refused = client.post(CHAT, json=chat(), headers={**login, **ASYNC})
    assert refused.status_code == 402 and "Your spend budget" in refused.json["message"]
    assert client.patch(f"/api/admin/users/{account['id']}", headers=admin,
                        json={"budget": None}).status_code == 200  # the tier's default again
    assert client.post(CHAT, json=chat(), headers={**login, **ASYNC}).status_code == 202


def test_a_keys_own_rpm_limit_narrows_its_users_tier(client, accounts):
    _, login = accounts.headers()
    key = make_key(client, login, rpm_limit=2)["key"]
    codes = [client.post(CHAT, json=chat(), headers={**bearer(key), **ASYNC}).status_code
             for _ in range(3)]
    assert codes == [202, 202, 429]
    assert client.post(CHAT, json=chat(), headers={**login, **ASYNC}).status_code == 202


def test_admins_list_and_revoke_any_users_keys_and_others_cannot(client, accounts):
    owner, login = accounts.headers()
    key = make_key(client, login)
    _, admin = accounts.headers("admin")
    _, stranger = accounts.headers()
    listed = client.get(f"/api/keys?user_id={owner['id']}", headers=admin).json["data"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert client.get(f"/api/keys?user_id={owner['id']}", headers=stranger).status_code == 403
    assert client.delete(f"/api/keys/{key['id']}", headers=stranger).status_code == 404
    assert client.delete(f"/api/keys/{key['id']}", headers=admin).status_code == 200
    assert client.get("/api/jobs", headers=bearer(key["key"])).status_code == 401


def test_v1_models_lists_only_what_the_key_may_use(client, accounts):
    _, login = accounts.headers()
    key = make_key(client, login, models=["qwen-plus", "wanx-v1"])["key"]
    listed = client.get("/v1/models", headers=bearer(key)).json["data"]
    assert sorted(m["id"] for m in listed) == ["qwen-plus", "wanx-v1"]


def test_the_sweeper_closes_charges_of_jobs_that_ended_without_the_hook(
        client, accounts, database, lifecycle, settings):
    from common.jobs import sweeper

    _, login = accounts.headers()
    key = make_key(client, login, budget={"amount": 1, "period": "month"})
    job_id = client.post(CHAT, json=chat("[[emulator: latency_ms=4000]]"),
                         headers={**bearer(key["key"]), **ASYNC}).json["data"]["id"]
    with database.transaction() as conn:  # ended by hand: no lifecycle transition, no hook
        conn.execute(Job.__table__.update().where(Job.__table__.c.id == job_id)
                     .values(status="failed", finished_at=utcnow()))
    assert _counter(database, "key", key["id"]).reserved > 0
    sweeper.sweep(lifecycle=lifecycle, settings=settings)  # (or beat's, whichever is first)
    with database.session() as session:
        assert session.get(JobCharge, job_id).outcome == "released"
    sweeper.sweep(lifecycle=lifecycle, settings=settings)
    assert _counter(database, "key", key["id"]).reserved == 0  # released once, not twice
