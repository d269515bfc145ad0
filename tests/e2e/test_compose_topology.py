"""The compose topology, proven without a Docker engine: every service of docker-compose.yml
(the offline profile's emulator included) started as a local process with the command and the
environment compose would give it, the machine's MariaDB and Redis standing in for the mysql
and redis services; then the API smoke test (test_qwen_apis.py) must pass 100 %."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from tests.support import processes
from tests.support.stack import (
    MYSQL_HOST,
    MYSQL_PASSWORD,
    MYSQL_PORT,
    MYSQL_USER,
    REDIS_HOST,
    REDIS_PORT,
    fresh_database,
    redis_db,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# Redis databases of this stack alone
APP_DB, BROKER_DB = redis_db("compose_app"), redis_db("compose_broker")
ADMIN_PASSWORD = "compose-admin-password"
JWT = "compose-topology-" + "s" * 40


def _compose_config(workdir: Path) -> dict:
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed (Debian package docker-compose)")
        pytest.skip("docker-compose is not installed")
    for name in ("docker-compose.yml", "Dockerfile.web", "Dockerfile.worker"):
        shutil.copy(REPO / name, workdir / name)
    shutil.copytree(REPO / "deploy", workdir / "deploy")
    env_file = (REPO / ".env.example").read_text() + "\n".join([
        "MYSQL_ROOT_PASSWORD=unused", "GRAFANA_ADMIN_PASSWORD=unused",
        f"JWT_SECRET_KEY={JWT}", "ADMIN_USERNAME=admin", f"ADMIN_PASSWORD={ADMIN_PASSWORD}",
        "FLOWER_BASIC_AUTH=ops:flower-secret-of-the-tests", "QWEN_API_KEY=sk-offline-emulator",
        "DASHSCOPE_HTTP_BASE_URL=http://emulator:8089/api/v1",
        'IMAGE_DOWNLOAD_HOSTS=["emulator"]', "IMAGE_DOWNLOAD_ALLOW_HTTP=true", ""])
    (workdir / ".env").write_text(env_file)
    resolved = subprocess.run([docker_compose, "config"], cwd=workdir, check=True, text=True,
                              capture_output=True, env={**os.environ,
                                                        "COMPOSE_PROFILES": "offline"})
    return yaml.safe_load(resolved.stdout)["services"]


class Topology:
    """Maps the compose network onto this machine: service names to local ports."""

    def __init__(self, tmp: Path, database: str) -> None:
        self.tmp = tmp
        self.ports = {name: processes.free_port()
                      for name in ("web", "emulator", "flower", "worker-metrics",
                                   "worker-streams-metrics")}
        self.hosts = {"mysql": MYSQL_HOST, "redis": REDIS_HOST, "emulator": "127.0.0.1"}
        self.database = database

    def environment(self, service: dict, name: str = "") -> dict[str, str]:
        env = {**os.environ, **{k: str(v) for k, v in (service.get("environment") or {}).items()}}
        env.update({
            "DB_HOST": MYSQL_HOST, "DB_PORT": str(MYSQL_PORT), "DB_NAME": self.database,
            "DB_USER": MYSQL_USER, "DB_PASSWORD": MYSQL_PASSWORD,
            "REDIS_HOST": REDIS_HOST, "REDIS_PORT": str(REDIS_PORT), "REDIS_DB": str(APP_DB),
            "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            "DASHSCOPE_HTTP_BASE_URL": env.get("DASHSCOPE_HTTP_BASE_URL", "").replace(
                "emulator:8089", f"127.0.0.1:{self.ports['emulator']}"),
            "IMAGE_DOWNLOAD_HOSTS": '["127.0.0.1"]',
            "IMAGE_STORAGE_DIR": str(self.tmp / "images"), "DATA_DIR": str(self.tmp),
            # Containers each have the port to themselves; processes on one host do not.
            "WORKER_METRICS_PORT": str(self.ports.get(f"{name}-metrics", 0)),
            "PYTHONPATH": str(REPO),
        })
        return env

    def command(self, service: dict) -> list[str]:
        replacements = {"0.0.0.0:8000": f"127.0.0.1:{self.ports['web']}",
                        "--port=5555": f"--port={self.ports['flower']}",
                        "8089": str(self.ports["emulator"]), "0.0.0.0": "127.0.0.1"}
        argv = []
        for arg in service["command"]:
            arg = str(arg).replace("/data/", f"{self.tmp}/")
            argv.append(replacements.get(arg, arg))
        binary = processes.BIN / argv[0]
        argv[0] = str(binary) if binary.exists() else sys.executable
        return argv


def test_compose_services_as_processes_pass_the_smoke_test(tmp_path, mysql_server,
                                                          redis_server, log_dir):
    project = tmp_path / "compose-project"
    project.mkdir()
    services = _compose_config(project)
    for db in (APP_DB, BROKER_DB):
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    started: list[processes.Process] = []
    with fresh_database("bailian_topology") as database:
        topology = Topology(tmp_path, database)
        try:
            emulator = services["emulator"]
            started.append(processes.Process("topology-emulator", topology.command(emulator),
                                             topology.environment(emulator), log_dir).start())
            started[-1].wait_for_http(
                f"http://127.0.0.1:{topology.ports['emulator']}/_emulator/health")

            migrate = services["migrate"]
            subprocess.run(topology.command(migrate), cwd=REPO, check=True,
                           env=topology.environment(migrate), capture_output=True)

            running = {}
            for name in ("web", "worker", "worker-streams", "beat", "flower"):
                service = services[name]
                running[name] = processes.Process(f"topology-{name}", topology.command(service),
                                                  topology.environment(service, name),
                                                  log_dir).start()
                started.append(running[name])
            web_url = f"http://127.0.0.1:{topology.ports['web']}"
            running["web"].wait_for_http(f"{web_url}/health/ready")
            running["worker"].wait_for_log("ready.")
            running["worker-streams"].wait_for_log("ready.")
            running["flower"].wait_for_http(
                f"http://127.0.0.1:{topology.ports['flower']}/healthcheck")

            smoke = subprocess.run(
                [sys.executable, str(REPO / "test_qwen_apis.py"), "--base-url", web_url,
                 "--username", "admin", "--password", ADMIN_PASSWORD, "--timeout", "60",
                 "--min-success", "100"], capture_output=True, text=True, timeout=600)
            assert smoke.returncode == 0, smoke.stdout + smoke.stderr
            assert "100.0% success" in smoke.stdout
        finally:
            for proc in reversed(started):
                proc.stop()
