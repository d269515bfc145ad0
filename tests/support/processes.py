"""Real platform processes for integration and end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from common.jobs.queue import QUEUES

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUNICORN_CONF = REPO / "gunicorn.conf.py"  # what production reads, from its working directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process whose output goes to a log file that failing tests can show."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 60, offset: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log()[offset:]:
                return
            if self.popen and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} never logged {needle!r}:\n{self.log()[-4000:]}")

    def wait_for_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=1).status_code < 500:
                    return
            if self.popen and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer {url}:\n{self.log()[-4000:]}")

    def children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True,
                             text=True, check=False).stdout
        return [int(pid) for pid in out.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a worker and its pool children)."""
        if self.popen and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self, timeout: float = 20) -> None:
        if not self.popen or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def emulator(env: dict[str, str], log_dir: Path, port: int, *extra: str) -> Process:
    proc = Process("emulator", [str(BIN / "python"), "-m", "emulator", "--port", str(port),
                                *extra], env, log_dir).start()
    proc.wait_for_http(f"http://127.0.0.1:{port}/_emulator/health")
    return proc


def worker(env: dict[str, str], log_dir: Path, *, name: str = "worker", pool: str = "threads",
           concurrency: int = 8, metrics_port: int | None = None,
           queues: tuple[str, ...] = QUEUES) -> Process:
    """A worker of every queue unless `queues` says (deployed, streams get a worker of their
    own: common/jobs/queue.py)."""
    env = {**env, "WORKER_METRICS_PORT": str(metrics_port or free_port())}
    proc = Process(name, worker_argv(name, pool=pool, concurrency=concurrency, queues=queues),
                   env, log_dir).start()
    proc.wait_for_log("ready.")
    return proc


def worker_argv(name: str, *, pool: str = "threads", concurrency: int = 8,
                queues: tuple[str, ...] = QUEUES) -> list[str]:
    return [str(BIN / "celery"), "-A", "worker.celery_app", "worker", "-P", pool,
            "-c", str(concurrency), "-Q", ",".join(queues),
            "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
            "--loglevel", "INFO"]


def beat(env: dict[str, str], log_dir: Path) -> Process:
    schedule = log_dir / "celerybeat-schedule"
    proc = Process("beat", [str(BIN / "celery"), "-A", "worker.celery_app", "beat",
                            "-s", str(schedule), "--loglevel", "INFO"], env, log_dir).start()
    proc.wait_for_log("beat: Starting...")
    return proc


def gunicorn(env: dict[str, str], log_dir: Path, port: int, *, name: str = "web",
             workers: int = 2) -> Process:
    """The web tier as production serves it: gunicorn reads gunicorn.conf.py from the repo
    root (the worker class, its connections, timeouts), so only the address and the number
    of processes are given here. WEB_WORKER_CLASS in `env` picks another model to compare."""
    proc = Process(name, [str(BIN / "gunicorn"), "web.wsgi:app", "-c", str(GUNICORN_CONF),
                          "-b", f"127.0.0.1:{port}", "-w", str(workers)], env, log_dir).start()
    proc.wait_for_http(f"http://127.0.0.1:{port}/health")
    return proc
