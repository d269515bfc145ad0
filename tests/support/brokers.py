"""Private broker servers that a fault test may stop and start again without touching the
shared ones: a redis-server and a RabbitMQ node, each with its own port and data directory.

Data survives a stop (Redis with its append-only file, RabbitMQ with its Mnesia directory), so a
restart is the outage a deployment sees, not a wipe.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _wait_port(port: int, is_open: bool, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _port_open(port) != is_open:
        assert time.monotonic() < deadline, f"port {port} still {'closed' if is_open else 'open'}"
        time.sleep(0.05)


class PrivateRedis:
    kind = "redis"

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.port = free_port()

    def url(self, db: int = 1) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port",
                        str(self.port), "--dir", str(self.dir), "--appendonly", "yes",
                        "--appendfsync", "always", "--save", "",
                        "--logfile", str(self.dir / "redis.log")], check=True)
        _wait_port(self.port, True)

    def stop(self) -> None:
        # SHUTDOWN flushes the append-only file, as `docker stop` of the compose Redis does.
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], check=False,
                       capture_output=True)
        _wait_port(self.port, False)


class PrivateRabbit:
    """A RabbitMQ node of its own (node name, AMQP and distribution ports, Mnesia and log
    directories), started with the system's rabbitmq-server."""

    kind = "rabbitmq"

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its 0700 parents keep out the rabbitmq user.
        self.dir = data_dir = Path(tempfile.mkdtemp(prefix="bailian-rabbit-"))
        data_dir.chmod(0o755)
        self.port = free_port()
        self.node = f"bailian-test-{os.getpid()}-{self.port}@localhost"
        config = data_dir / "rabbitmq.conf"
        # The system config names the shared node's listener; this one names ours.
        config.write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (data_dir / "enabled_plugins").write_text("[].\n")
        self.env = {**os.environ, "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_DIST_PORT": str(free_port()),
                    "RABBITMQ_CONFIG_FILE": str(config),
                    "RABBITMQ_MNESIA_BASE": str(data_dir / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(data_dir / "log"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(data_dir / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(data_dir / "rabbit.pid")}
        if os.geteuid() == 0:  # rabbitmq-server drops to the rabbitmq user when run as root
            with_user = pwd.getpwnam("rabbitmq")
            for path in (data_dir, config, data_dir / "enabled_plugins"):
                os.chown(path, with_user.pw_uid, with_user.pw_gid)

    @staticmethod
    def available() -> bool:
        return shutil.which("rabbitmq-server") is not None

    def url(self, vhost: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-n", self.node, *args], env=self.env,
                              capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True,
                       capture_output=True)
        deadline = time.monotonic() + 90
        while not (self.dir / "rabbit.pid").exists():
            assert time.monotonic() < deadline, "rabbitmq-server wrote no pid file"
            time.sleep(0.1)
        waited = self.ctl("wait", "--timeout", "90", str(self.dir / "rabbit.pid"))
        assert waited.returncode == 0, waited.stdout + waited.stderr
        _wait_port(self.port, True)

    def stop(self) -> None:
        self.ctl("stop", str(self.dir / "rabbit.pid"))  # returns once the node has exited
        _wait_port(self.port, False)
        (self.dir / "rabbit.pid").unlink(missing_ok=True)

    def remove(self) -> None:
        if _port_open(self.port):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
