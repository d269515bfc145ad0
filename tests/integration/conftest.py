"""A real Celery worker and beat (sweeper) against MariaDB, Redis and the emulator."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support import processes


@dataclasses.dataclass
class Platform:
    env: dict[str, str]
    worker: processes.Process
    beat: processes.Process
    log_dir: object
    streamer: processes.Process | None = None  # a streams worker of its own, where started

    def restart_worker(self) -> None:
        self.worker.stop()
        self.worker = processes.worker(self.env, self.log_dir)


@pytest.fixture(scope="module")
def platform(base_env, log_dir, emulator):
    worker = processes.worker(base_env, log_dir)
    beat = processes.beat(base_env, log_dir)
    running = Platform(base_env, worker, beat, log_dir)
    yield running
    running.worker.stop()
    running.beat.stop()
    if running.streamer is not None:
        running.streamer.stop()
