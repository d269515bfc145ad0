"""The processes a benchmark run needs: the platform, the emulator and the bare baselines."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil
import redis
import requests
from alembic import command

from common.accounts import users
from common.accounts.models import Role
from common.infra.db import Database
from common.jobs.queue import STREAM_QUEUE, THREAD_QUEUES
from tests.support import processes
from tests.support.stack import (
    REDIS_HOST,
    REDIS_PORT,
    EmulatorClient,
    alembic_config,
    fresh_database,
    mysql_url,
    platform_env,
)

HISTORY_DB, APP_DB, BROKER_DB, NOOP_DB = 12, 13, 14, 15
# gunicorn.conf.py's defaults: the platform is measured as it is deployed (its worker class
# too, which gunicorn reads from gunicorn.conf.py; WEB_WORKER_CLASS=gthread measures threads).
WEB_WORKERS = 2
WEB_WORKER_CLASS = os.environ.get("WEB_WORKER_CLASS", "gevent")
WEB_MODEL = (f"{WEB_WORKERS}x{os.environ.get('WEB_THREADS', '16')} gthread"
             if WEB_WORKER_CLASS == "gthread" else
             f"{WEB_WORKERS}x{os.environ.get('WEB_WORKER_CONNECTIONS', '2000')} {WEB_WORKER_CLASS}")


def deployed_workers(streams: int = 1000, threads: int = 32) -> str:
    """What start_deployed_workers runs, for a result's setup."""
    return f"workers: threads x{threads} (chat, images, maintenance), gevent x{streams} (streams)"


class BenchStack:
    """Starts what a scenario asks for, remembers it, and stops it all at the end."""

    def __init__(self) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
        self._exit = contextlib.ExitStack()
        self.procs: dict[str, processes.Process] = {}
        self.memory = MemoryPeaks(self)

    def __enter__(self) -> BenchStack:
        for db in (HISTORY_DB, APP_DB, BROKER_DB, NOOP_DB):
            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
        name = self._exit.enter_context(fresh_database("bailian_bench"))
        self.database_url = mysql_url(name)
        command.upgrade(alembic_config(self.database_url), "head")
        self.database = Database(self.database_url)
        emulator_port = processes.free_port()
        self.procs["emulator"] = processes.emulator(
            {**os.environ, "EMULATOR_API_KEY": "sk-emulator-test-key"}, self.log_dir,
            emulator_port)
        self.emulator = EmulatorClient(emulator_port)
        self.env = platform_env(
            database_url=self.database_url,
            redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{APP_DB}",
            broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            emulator=self.emulator, LOG_LEVEL="WARNING", SYNC_WAIT_SECONDS="25",
            UPSTREAM_TIMEOUT_SECONDS="30", JOB_LEASE_SECONDS="60", JOB_DEADLINE_SECONDS="600",
            REPUBLISH_QUEUED_AFTER_SECONDS="300", SWEEPER_INTERVAL_SECONDS="15",
            # The production defaults, not the tests' short ones.
            BROKER_VISIBILITY_TIMEOUT="900", TASK_TIME_LIMIT="300",
            IMAGE_POLL_MAX_INTERVAL="300", IMAGE_JOB_DEADLINE_SECONDS="1800",
            VIDEO_POLL_BACKOFF="[5, 10, 15]")
        self.memory.start()
        return self

    @property
    def settings(self):
        from unittest import mock

        from common.infra.settings import Settings

        with mock.patch.dict(os.environ, self.env, clear=True):
            return Settings()

    def __exit__(self, *exc) -> None:
        self.memory.stop()
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.database.dispose()
        self._exit.close()

    # --- platform ------------------------------------------------------------------------

    def start_web(self, name: str = "web", **env) -> str:
        port = processes.free_port()
        self.procs[name] = processes.gunicorn({**self.env, **env}, self.log_dir, port,
                                              name=name, workers=WEB_WORKERS)
        url = f"http://127.0.0.1:{port}"
        if name == "web":
            self.web_url = url
        return url

    def start_worker(self, pool: str = "threads", concurrency: int = 32) -> processes.Process:
        """A worker of every queue (streamed chats included)."""
        self.stop("worker")
        self.stop("streams-worker")
        self.procs["worker"] = processes.worker(self.env, self.log_dir, pool=pool,
                                                concurrency=concurrency)
        return self.procs["worker"]

    def start_deployed_workers(self, threads: int = 32, streams: int = 1000) -> None:
        """The workers as deployed (docker-compose.yml): threads for the chat, images and
        maintenance queues, a gevent pool of `streams` greenlets for streamed chats."""
        self.stop("worker")
        self.stop("streams-worker")
        self.procs["worker"] = processes.worker(self.env, self.log_dir, concurrency=threads,
                                                queues=THREAD_QUEUES)
        self.procs["streams-worker"] = processes.worker(
            self.env, self.log_dir, name="streams-worker", pool="gevent", concurrency=streams,
            queues=(STREAM_QUEUE,))

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop()

    def purge_broker(self) -> None:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=BROKER_DB).flushdb()

    def token(self, role: str = "admin") -> str:
        username = f"bench_{role}_{time.monotonic_ns()}"
        with self.database.session() as session:
            users.create_user(session=session, username=username, password="bench-password",
                              role=Role(role))
        response = requests.post(f"{self.web_url}/api/auth/login", timeout=10,
                                 json={"username": username, "password": "bench-password"})
        response.raise_for_status()
        return response.json()["data"]["access_token"]

    # --- baselines -----------------------------------------------------------------------

    def start_bare_flask(self) -> str:
        port = processes.free_port()
        self.procs["bare-flask"] = processes.Process(
            "bare-flask", [str(processes.BIN / "gunicorn"), "bench.baselines.flask_app:app",
                           "-c", str(processes.GUNICORN_CONF), "-b", f"127.0.0.1:{port}",
                           "-w", str(WEB_WORKERS)],
            self.env, self.log_dir).start()  # served like the platform: gunicorn.conf.py
        self.procs["bare-flask"].wait_for_http(f"http://127.0.0.1:{port}/json")
        return f"http://127.0.0.1:{port}"

    def noop_env(self) -> dict[str, str]:
        url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{NOOP_DB}"
        # Celery reads CELERY_BROKER_URL from the environment itself: keep the platform's out.
        env = {k: v for k, v in self.env.items() if k != "CELERY_BROKER_URL"}
        return {**env, "NOOP_BROKER_URL": url, "NOOP_RESULT_URL": url}

    def start_noop_worker(self, pool: str = "threads", concurrency: int = 32) -> None:
        self.stop("noop-worker")
        self.procs["noop-worker"] = processes.Process(
            "noop-worker", [str(processes.BIN / "celery"), "-A", "bench.baselines.celery_noop",
                            "worker", "-P", pool, "-c", str(concurrency), "--without-gossip",
                            "--without-mingle", "-n", f"noop-{os.getpid()}@%h",
                            "--loglevel", "INFO"],
            self.noop_env(), self.log_dir).start()
        self.procs["noop-worker"].wait_for_log("ready.")

    def process_tree(self, name: str) -> list[psutil.Process]:
        proc = self.procs.get(name)
        if proc is None:
            return []
        try:
            root = psutil.Process(proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self, name: str) -> float:
        """CPU time (user + system) a process and its children have used so far."""
        return _cpu_seconds(self.process_tree(name))

    @staticmethod
    def servers_cpu_seconds() -> float:
        """CPU time the machine's MariaDB and Redis servers have used so far."""
        return _cpu_seconds(p for p in psutil.process_iter(["name"])
                            if p.info["name"] in ("mariadbd", "mysqld", "redis-server"))

    def rss_mb(self, name: str) -> float:
        """Resident memory of a process and its children, in MB."""
        return sum(p.memory_info().rss for p in self.process_tree(name)
                   if p.is_running()) / 2**20


def _cpu_seconds(members) -> float:
    total = 0.0
    for member in members:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system
    return total


class MemoryPeaks(threading.Thread):
    """Samples every platform process twice a second for the whole run and keeps the peak
    resident memory of one process of each role: a gunicorn worker, a Celery worker."""

    ROLES = {"web": "gunicorn web worker", "worker": "celery worker process"}

    def __init__(self, stack: BenchStack) -> None:
        super().__init__(name="memory-peaks", daemon=True)
        self.stack = stack
        self.peaks_mb: dict[str, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            for name in list(self.stack.procs):
                role = "web" if name.startswith("web") else name if name == "worker" else None
                if role is None:
                    continue
                tree = self.stack.process_tree(name)
                # A gunicorn arbiter only forks; its workers serve. Celery's threads pool is
                # one process, prefork's children do the work: count every process alike.
                members = tree[1:] if role == "web" else tree
                for member in members:
                    with contextlib.suppress(psutil.Error):
                        rss = member.memory_info().rss / 2**20
                        self.peaks_mb[role] = max(self.peaks_mb.get(role, 0.0), rss)

    def stop(self) -> None:
        self._done.set()
