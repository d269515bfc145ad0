"""Observability end to end: gunicorn with two workers, a Celery worker, Flower and a real
Prometheus server (Debian's `prometheus`) scraping them all; promtool on every output and on
deploy/; one request id followed from the web line to the worker lines and upstream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import redis
import requests
import yaml
from sqlalchemy import func, select

from common.billing.models import UsageRecord
from common.jobs.queue import QUEUES
from tests.support import processes
from tests.support.jobs import directive, wait_until
from tests.support.stack import REDIS_HOST, REDIS_PORT, redis_db

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# This stack's own queue: its worker sees only this test's jobs.
BROKER_DB = redis_db("observability_broker")
CHATS, IMAGES = 6, 2


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def stack(base_env, log_dir, emulator):
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=BROKER_DB).flushdb()
    env = {**base_env, "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
           "FLOWER_BASIC_AUTH": "ops:flower-secret-of-the-tests"}
    web_port, worker_port, flower_port, prom_port = (processes.free_port() for _ in range(4))
    procs = [processes.gunicorn(env, log_dir, web_port, name="obs-web", workers=2),
             processes.worker(env, log_dir, name="obs-worker", metrics_port=worker_port)]
    flower = processes.Process("obs-flower", [str(processes.BIN / "celery"), "-A",
                                              "worker.celery_app", "flower",
                                              f"--port={flower_port}", "--address=127.0.0.1"],
                               env, log_dir).start()
    procs.append(flower)
    flower.wait_for_http(f"http://127.0.0.1:{flower_port}/healthcheck")
    config = log_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "web", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
            {"job_name": "worker",
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "flower",
             "static_configs": [{"targets": [f"127.0.0.1:{flower_port}"]}]}]}))
    prometheus = processes.Process("prometheus", [
        _tool("prometheus"), f"--config.file={config}",
        f"--storage.tsdb.path={log_dir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        env, log_dir).start()
    procs.append(prometheus)
    prometheus.wait_for_http(f"http://127.0.0.1:{prom_port}/-/ready")
    yield {"web": f"http://127.0.0.1:{web_port}", "worker": f"http://127.0.0.1:{worker_port}",
           "flower": f"http://127.0.0.1:{flower_port}", "prometheus": f"http://127.0.0.1:{prom_port}",
           "procs": {p.name: p for p in procs}}
    for proc in reversed(procs):
        proc.stop()


@pytest.fixture(scope="module")
def traffic(stack, accounts_module, database):
    """A known amount of work: CHATS sync chats, IMAGES sync generations, one 404."""
    account = accounts_module.create()
    login = requests.post(f"{stack['web']}/api/auth/login", timeout=10, json={
        "username": account["username"], "password": account["password"]})
    token = login.json()["data"]["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    job_ids = []
    for i in range(CHATS):  # a new connection each time, so both gunicorn workers serve some
        response = requests.post(f"{stack['web']}/api/bailian/chat/completions", timeout=60,
                                 headers=headers, json={"model": "qwen-plus", "messages": [
                                     {"role": "user", "content": f"metrics run {i}"}]})
        assert response.status_code == 200, response.text
        job_ids.append(response.json()["data"]["job_id"])
    for i in range(IMAGES):
        response = requests.post(f"{stack['web']}/api/bailian/generation", timeout=60,
                                 headers=headers, json={
                                     "model": "wanx-v1",
                                     "prompt": f"metrics {i} {directive(duration_s=0)}"})
        assert response.status_code == 200, response.text
        job_ids.append(response.json()["data"]["job_id"])
    assert requests.get(f"{stack['web']}/api/no-such-route/{uuid.uuid4()}",
                        timeout=10).status_code == 404
    return {"job_ids": job_ids, "headers": headers}


@pytest.fixture(scope="module")
def accounts_module(database):
    from tests.conftest import Accounts

    return Accounts(database, client=None)


def query(stack, expr: str) -> float | None:
    response = requests.get(f"{stack['prometheus']}/api/v1/query", params={"query": expr},
                            timeout=10).json()
    assert response["status"] == "success", response
    result = response["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def eventually(stack, expr: str, expected: float, timeout: float = 30) -> None:
    wait_until(lambda: query(stack, expr) == expected, timeout=timeout, interval=0.5,
               message=f"{expr} never became {expected} (last: {query(stack, expr)})")


def test_request_counts_add_up_across_both_gunicorn_workers(stack, traffic):
    eventually(stack, 'sum(http_requests_total{endpoint="/api/bailian/chat/completions",'
                      'method="POST",status="200"})', CHATS)
    eventually(stack, 'sum(http_requests_total{endpoint="/api/bailian/generation",'
                      'status="200"})', IMAGES)
    # The 404 is counted under a bounded label, never its random path.
    eventually(stack, 'sum(http_requests_total{endpoint="unmatched",status="404"})', 1)
    assert query(stack, 'count(http_requests_total{endpoint=~".*no-such-route.*"})') is None
    served_by = {p.name.split("_")[-1] for p in Path(_multiproc_dir(stack)).glob("counter_*.db")}
    assert len(served_by) >= 2, "both gunicorn workers should have written samples"
    assert query(stack, 'sum(http_request_duration_seconds_count{'
                        'endpoint="/api/bailian/chat/completions"})') == CHATS


def _multiproc_dir(stack) -> str:
    master = stack["procs"]["obs-web"].pid
    return f"/tmp/bailian-web-metrics-{master}"


def test_tokens_equal_the_usage_rows(stack, traffic, database):
    with database.session() as session:
        input_tokens, output_tokens, images = session.execute(
            select(func.sum(UsageRecord.input_tokens), func.sum(UsageRecord.output_tokens),
                   func.sum(UsageRecord.image_count))
            .where(UsageRecord.job_id.in_(traffic["job_ids"]))).one()
    eventually(stack, 'sum(ai_token_usage_total{type="input"})', float(input_tokens))
    eventually(stack, 'sum(ai_token_usage_total{type="output"})', float(output_tokens))
    eventually(stack, "sum(ai_images_generated_total)", float(images))
    eventually(stack, 'sum(ai_requests_total{status="success"})', CHATS + IMAGES)
    eventually(stack, 'sum(jobs_finished_total{kind="chat",status="succeeded"})', CHATS)
    eventually(stack, 'sum(jobs_finished_total{kind="image",status="succeeded"})', IMAGES)
    assert query(stack, 'sum(ai_request_duration_seconds_count{operation="chat"})') == CHATS
    assert query(stack, "sum(usage_cost_total)") > 0
    assert query(stack, "sum(database_queries_total)") > 0


def test_state_metrics_and_flower_are_scraped(stack, traffic):
    eventually(stack, 'health_check_status{component="database"}', 1)
    eventually(stack, 'health_check_status{component="redis"}', 1)
    eventually(stack, "count(celery_queue_length)", len(QUEUES))
    assert query(stack, "max(jobs_past_deadline)") == 0
    assert query(stack, "max(wanx_tasks_in_flight)") is not None
    eventually(stack, 'up{job="flower"}', 1)

    # Workers send task events only once Flower has asked for them (it does every 5 s), so
    # keep a job going until Flower has counted one.
    def flower_counted_a_task() -> bool:
        requests.post(f"{stack['web']}/api/bailian/chat/completions", timeout=60,
                      headers={**traffic["headers"], "Prefer": "respond-async"},
                      json={"model": "qwen-turbo", "messages": [
                          {"role": "user", "content": "watched by flower"}]})
        return query(stack, "sum(flower_events_total)") is not None

    wait_until(flower_counted_a_task, timeout=60, interval=2)


def test_promtool_accepts_every_metrics_output(stack, traffic):
    promtool = _tool("promtool")
    for name, url in (("web", f"{stack['web']}/metrics"), ("worker", stack["worker"]),
                      ("flower", f"{stack['flower']}/metrics")):
        text = requests.get(url, timeout=10).text
        assert text.strip(), name
        checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                 capture_output=True)
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"


def test_promtool_accepts_deploy_config_and_rules():
    promtool = _tool("promtool")
    for args in (["check", "config", str(REPO / "deploy/prometheus/prometheus.yml")],
                 ["check", "rules", str(REPO / "deploy/prometheus/alerts.yml")]):
        checked = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_rule_tests_pass():
    """deploy/prometheus/alerts_test.yml: RateLimiterWithoutRedis fires after its `for:` window
    on rate_limit_storage_errors_total, and stays silent without errors."""
    checked = subprocess.run([_tool("promtool"), "test", "rules",
                              str(REPO / "deploy/prometheus/alerts_test.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr


def test_every_dashboard_query_runs(stack, traffic):
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/bailian.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            response = requests.get(f"{stack['prometheus']}/api/v1/query", timeout=10,
                                    params={"query": target["expr"]}).json()
            assert response["status"] == "success", (panel["title"], response)


def test_flower_requires_basic_auth(stack):
    assert requests.get(stack["flower"], timeout=10).status_code == 401
    assert requests.get(stack["flower"], timeout=10,
                        auth=("ops", "flower-secret-of-the-tests")).status_code == 200
    assert requests.get(f"{stack['flower']}/metrics", timeout=10).status_code == 200


def test_one_request_id_finds_every_line_of_its_job(stack, traffic, emulator):
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    response = requests.post(f"{stack['web']}/api/bailian/chat/completions", timeout=60,
                             headers={**traffic["headers"], "X-Request-ID": request_id},
                             json={"model": "qwen-turbo", "messages": [
                                 {"role": "user", "content": "follow me"}]})
    assert response.headers["X-Request-ID"] == request_id
    job_id = response.json()["data"]["job_id"]

    def lines(proc_name):
        found = []
        for line in stack["procs"][proc_name].log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # gunicorn's and celery's banners
            if entry.get("request_id") == request_id:
                found.append(entry)
        return found

    web_lines = wait_until(lambda: lines("obs-web"), timeout=10)
    assert any(e["logger"] == "web.access" and e.get("job_id") == job_id for e in web_lines)
    worker_lines = wait_until(lambda: lines("obs-worker"), timeout=10)
    assert all(e.get("job_id") == job_id for e in worker_lines)
    assert {"timestamp", "level", "logger", "message", "user_id"} <= set(worker_lines[0])
    assert any(e.get("request_id") == request_id for e in emulator.stats()["log"])


def test_metrics_can_be_switched_off(settings):
    from web.app import create_app

    client = create_app(settings.model_copy(update={"metrics_enabled": False})).test_client()
    assert client.get("/metrics").status_code == 404
