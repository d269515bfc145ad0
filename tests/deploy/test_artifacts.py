"""The deployment artifacts are valid and match the application: Dockerfiles (hadolint),
docker-compose.yml (`docker-compose config -q`) and the Kubernetes manifests (probe paths,
ports, environment names and commands)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.infra.settings import Settings
from common.jobs.queue import QUEUES, STREAM_QUEUE, THREAD_QUEUES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SETTINGS_ENV = {name.upper() for name in Settings.model_fields} | {"DASHSCOPE_API_KEY"}
# Read by processes other than ours: gunicorn.conf.py, compose interpolation, Flower.
OTHER_ENV = {"WEB_CONCURRENCY", "WEB_WORKER_CLASS", "WEB_WORKER_CONNECTIONS", "WEB_THREADS",
             "BIND", "PROMETHEUS_MULTIPROC_DIR"}
APP_SERVICES = ("migrate", "web", "worker", "worker-streams", "beat", "flower")
WORKER_COMMAND = ["celery", "-A", "worker.celery_app", "worker", "-P", "threads", "-c", "32",
                  "-Q", ",".join(THREAD_QUEUES), "-n", "worker@%h", "--loglevel", "INFO"]
STREAMS_WORKER_COMMAND = ["celery", "-A", "worker.celery_app", "worker", "-P", "gevent",
                          "-c", "1000", "-Q", STREAM_QUEUE, "-n", "streams@%h",
                          "--loglevel", "INFO"]


def _tool(name: str) -> str:
    venv_tool = Path(os.sys.executable).parent / name
    path = str(venv_tool) if venv_tool.exists() else shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return path


# --- Dockerfiles ----------------------------------------------------------------------------

def test_hadolint_passes_both_dockerfiles():
    result = subprocess.run([_tool("hadolint"), "Dockerfile.web", "Dockerfile.worker"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _copied(dockerfile: str, stage: str | None = None) -> set[str]:
    sources, current = set(), None
    for line in (REPO / dockerfile).read_text().splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip() if " AS " in line else None
        elif line.startswith("COPY ") and "--from=" not in line and \
                (stage is None or current == stage):
            sources |= {part.rstrip("/") for part in line.split()[1:-1]
                        if not part.startswith("--")}
    return sources


def test_each_image_carries_only_its_own_code():
    web = _copied("Dockerfile.web")
    assert {"common", "web", "migrations"} <= web
    assert not web & {"worker", "emulator", "tests", "bench", "fc"}
    worker = _copied("Dockerfile.worker", stage="worker")
    assert {"common", "worker", "flowerconfig.py"} <= worker
    assert not worker & {"web", "emulator", "tests", "bench"}


def test_images_run_as_a_non_root_user_with_a_healthcheck():
    for dockerfile in ("Dockerfile.web", "Dockerfile.worker"):
        text = (REPO / dockerfile).read_text()
        assert "USER 10001:10001" in text and "HEALTHCHECK" in text
        assert "ENV JWT_SECRET_KEY" not in text and "QWEN_API_KEY" not in text


# --- docker compose -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict:
    """`docker-compose config` of the file, with .env made from .env.example."""
    workdir = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile.web", "Dockerfile.worker"):
        shutil.copy(REPO / name, workdir / name)
    shutil.copytree(REPO / "deploy", workdir / "deploy")
    (workdir / ".env").write_text((REPO / ".env.example").read_text()
                                  + "MYSQL_ROOT_PASSWORD=root-secret\n"
                                  + "GRAFANA_ADMIN_PASSWORD=grafana-secret\n")
    docker_compose = _tool("docker-compose")
    env = {**os.environ, "COMPOSE_PROFILES": "offline"}
    checked = subprocess.run([docker_compose, "config", "-q"], cwd=workdir, env=env,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    resolved = subprocess.run([docker_compose, "config"], cwd=workdir, env=env,
                              capture_output=True, text=True, check=True)
    return yaml.safe_load(resolved.stdout)


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(compose):
    services = compose["services"]
    # docker-compose 1.x resolves every profile's services.
    assert set(services) - {"rabbitmq"} == {"mysql", "redis", *APP_SERVICES, "prometheus",
                                            "grafana", "emulator"}
    for name, service in services.items():
        assert "healthcheck" in service, name
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "migrate" \
                else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)


def test_app_services_share_one_environment_with_documented_names(compose):
    services = compose["services"]
    environments = [services[name]["environment"] for name in APP_SERVICES]
    assert all(env.keys() == environments[0].keys() for env in environments)
    unknown = set(environments[0]) - SETTINGS_ENV - OTHER_ENV - {"MYSQL_ROOT_PASSWORD",
                                                                 "GRAFANA_ADMIN_PASSWORD"}
    assert unknown == set()


def test_commands_are_the_applications_entry_points(compose):
    services = compose["services"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["web"]["command"][:2] == ["gunicorn", "web.wsgi:app"]
    assert services["worker"]["command"] == WORKER_COMMAND
    assert services["worker-streams"]["command"] == STREAMS_WORKER_COMMAND
    # Between them the workers consume every queue the platform publishes to.
    assert set(THREAD_QUEUES) | {STREAM_QUEUE} == set(QUEUES)
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker.celery_app", "beat"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "worker.celery_app", "flower"]
    assert services["emulator"]["command"][:3] == ["python", "-m", "emulator"]


def test_the_worker_checks_run_the_consuming_check(compose, manifests):
    """compose, the image and Kubernetes ask worker/health.py (tested in
    tests/integration/test_broker_faults.py), with the file the worker touches."""
    worker = compose["services"]["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "worker.health"]
    assert worker["environment"]["WORKER_HEALTH_FILE"]
    probe = _container(manifests, "bailian-worker")["livenessProbe"]
    assert probe["exec"]["command"] == ["python", "-m", "worker.health"]
    assert manifests[("ConfigMap", "bailian-config")]["data"]["WORKER_HEALTH_FILE"]
    assert 'CMD ["python", "-m", "worker.health"]' in (REPO / "Dockerfile.worker").read_text()


def test_redis_keeps_work_and_volumes_keep_data(compose):
    services = compose["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volumes = compose["volumes"]
    assert {"mysql-data", "redis-data", "images", "prometheus-data", "grafana-data"} <= \
        set(volumes)
    assert ("images", "/data/images") in _mounts(services["web"])
    assert ("images", "/data/images") in _mounts(services["worker"])
    assert "/etc/prometheus" in {target for _, target in _mounts(services["prometheus"])}


def _mounts(service: dict) -> set[tuple[str, str]]:
    """(source, target) of each volume, in the short or the long syntax."""
    found = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found.add((source, target))
    return found


def test_the_offline_profile_only_adds_the_emulator():
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    profiled = {name for name, service in raw["services"].items() if service.get("profiles")}
    assert profiled == {"emulator", "rabbitmq"}
    assert raw["services"]["emulator"]["profiles"] == ["offline"]


def test_the_rabbitmq_profile_runs_a_durable_rabbitmq_the_apps_use(tmp_path):
    for name in ("docker-compose.yml", "Dockerfile.web", "Dockerfile.worker"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    url = "amqp://bailian:rabbit-secret@rabbitmq:5672//"
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text()
                                   + "MYSQL_ROOT_PASSWORD=root-secret\n"
                                   + "GRAFANA_ADMIN_PASSWORD=grafana-secret\n"
                                   + f"CELERY_BROKER_URL={url}\nRABBITMQ_PASSWORD=rabbit-secret\n")
    env = {**os.environ, "COMPOSE_PROFILES": "rabbitmq"}
    docker_compose = _tool("docker-compose")
    checked = subprocess.run([docker_compose, "config", "-q"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(subprocess.run([docker_compose, "config"], cwd=tmp_path, env=env,
                                             capture_output=True, text=True,
                                             check=True).stdout)["services"]
    rabbit = services["rabbitmq"]
    assert rabbit["environment"]["RABBITMQ_DEFAULT_PASS"] == "rabbit-secret"
    assert ("rabbitmq-data", "/var/lib/rabbitmq") in _mounts(rabbit)
    assert rabbit["hostname"] == "rabbitmq" and "healthcheck" in rabbit
    for name in APP_SERVICES:
        assert services[name]["environment"]["CELERY_BROKER_URL"] == url, name


# --- Kubernetes -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def _container(manifests, name: str) -> dict:
    return manifests[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]


def test_web_probes_use_the_documented_health_endpoints(manifests):
    web = _container(manifests, "bailian-web")
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert web["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert web["command"][:2] == ["gunicorn", "web.wsgi:app"]
    assert web["command"][web["command"].index("--bind") + 1] == f"0.0.0.0:{ports['http']}"
    service = manifests[("Service", "bailian-web")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_runs_the_platform_command_and_autoscales_on_its_queues(manifests):
    worker = _container(manifests, "bailian-worker")
    assert worker["command"] == WORKER_COMMAND
    assert _container(manifests, "bailian-worker-streams")["command"] == STREAMS_WORKER_COMMAND
    streams = manifests[("ScaledObject", "bailian-worker-streams")]
    assert [t["metadata"]["listName"] for t in streams["spec"]["triggers"]] == [STREAM_QUEUE]
    assert {p["containerPort"] for p in worker["ports"]} == {9808}
    scaled = manifests[("ScaledObject", "bailian-worker")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "bailian-worker"
    queues = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    assert queues <= set(QUEUES) and "chat" in queues
    broker_db = manifests[("ConfigMap", "bailian-config")]["data"]["CELERY_BROKER_URL"] \
        .rsplit("/", 1)[1]
    assert {t["metadata"]["databaseIndex"] for t in scaled["spec"]["triggers"]} == {broker_db}
    hpa = manifests[("HorizontalPodAutoscaler", "bailian-web")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "bailian-web"


def test_config_and_secret_use_the_documented_setting_names(manifests):
    config = set(manifests[("ConfigMap", "bailian-config")]["data"])
    secret = set(manifests[("Secret", "bailian-secrets")]["stringData"])
    assert (config | secret) - SETTINGS_ENV == set()
    assert {"JWT_SECRET_KEY", "DB_PASSWORD", "QWEN_API_KEY"} <= secret
    assert not config & {"JWT_SECRET_KEY", "DB_PASSWORD", "QWEN_API_KEY", "FC_AUTH_TOKEN"}
    assert all(value.startswith("REPLACE_ME") or value in ("", "admin") or "REPLACE_ME" in value
               for value in manifests[("Secret", "bailian-secrets")]["stringData"].values())


def test_every_container_has_resources_and_runs_as_non_root(manifests):
    for (kind, name), document in manifests.items():
        if kind not in ("Deployment", "Job"):
            continue
        pod = document["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert {"requests", "limits"} <= set(container["resources"]), name
            assert "envFrom" in container, name


def test_migration_job_runs_alembic(manifests):
    job = manifests[("Job", "bailian-migrate")]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["alembic", "upgrade", "head"]


def test_metrics_and_flower_listen_on_loopback_except_in_containers(compose, manifests):
    # Outside a container nothing but this host reaches them; inside one, Prometheus and the
    # probes come from other containers, so compose and Kubernetes open them explicitly.
    for field in ("worker_metrics_address", "flower_address"):
        assert Settings.model_fields[field].default == "127.0.0.1"
    config = manifests[("ConfigMap", "bailian-config")]["data"]
    for env in [compose["services"][name]["environment"] for name in APP_SERVICES] + [config]:
        assert env["WORKER_METRICS_ADDRESS"] == env["FLOWER_ADDRESS"] == "0.0.0.0"
