"""The load-test scenario users run against a deployment (bench/locustfile.py) runs here against
real processes: every kind of request it makes succeeds, polls included."""

from __future__ import annotations

import csv
import subprocess

import pytest

from tests.support import processes

pytestmark = pytest.mark.slow
KINDS = {"login", "chat (sync)", "chat (async)", "generation (async)", "/api/jobs/[id] (poll)",
         "/api/jobs", "/api/usage"}


@pytest.fixture(scope="module")
def deployment(base_env, log_dir, emulator):
    port = processes.free_port()
    web = processes.gunicorn(base_env, log_dir, port, name="load-web")
    worker = processes.worker(base_env, log_dir, name="load-worker", concurrency=16)
    yield f"http://127.0.0.1:{port}"
    worker.stop()
    web.stop()


def test_the_locust_mix_runs_clean_against_the_platform(deployment, accounts, tmp_path):
    account = accounts.create("admin")
    env = {"PATH": "/usr/bin:/bin", "BAILIAN_USERNAME": account["username"],
           "BAILIAN_PASSWORD": account["password"],
           "BAILIAN_IMAGE_PROMPT": "a lighthouse [[emulator: duration_s=2]]"}
    run = subprocess.run(
        [str(processes.BIN / "locust"), "-f", str(processes.REPO / "bench/locustfile.py"),
         "--host", deployment, "--headless", "--users", "8", "--spawn-rate", "8",
         "--run-time", "30s", "--stop-timeout", "20", "--csv", str(tmp_path / "load"),
         "--only-summary"],
        env=env, capture_output=True, text=True, timeout=180)
    with open(tmp_path / "load_stats.csv") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert set(rows) >= KINDS, sorted(rows)
    for name in KINDS:
        assert int(rows[name]["Request Count"]) > 0, name
        assert int(rows[name]["Failure Count"]) == 0, (name, rows[name])
