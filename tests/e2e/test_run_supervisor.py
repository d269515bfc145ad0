"""scripts/run's supervisor restarts a child that dies, with a doubling, capped backoff that
starts over once the child has run long enough (real child processes, short delays)."""

from __future__ import annotations

import importlib.util
import re
import time

from tests.support.processes import REPO


def _launch():
    spec = importlib.util.spec_from_file_location("launch", REPO / "scripts" / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _delays(err: str) -> list[float]:
    return [float(d) for d in re.findall(r"restarting it in ([\d.]+)s", err)]


def _run_until(supervisor, restarts: int, capsys, timeout: float = 20) -> list[float]:
    deadline, err = time.monotonic() + timeout, ""
    while len(_delays(err)) < restarts:
        assert time.monotonic() < deadline, err
        supervisor.check()
        err += capsys.readouterr().err
        time.sleep(0.01)
    return _delays(err)


def test_a_child_that_keeps_dying_waits_longer_each_time_up_to_the_cap(capsys):
    supervisor = _launch().Supervisor(first_delay=0.05, max_delay=0.2, stable_after=30)
    supervisor.start("flaky", ["sh", "-c", "exit 3"], {})
    try:
        assert _run_until(supervisor, 5, capsys) == [0.05, 0.1, 0.2, 0.2, 0.2]
    finally:
        supervisor.stop_all()


def test_a_child_that_ran_long_enough_starts_over_at_the_first_delay(capsys):
    supervisor = _launch().Supervisor(first_delay=0.05, max_delay=5, stable_after=0.3)
    supervisor.start("steady", ["sh", "-c", "sleep 0.4; exit 1"], {})
    try:
        assert _run_until(supervisor, 3, capsys) == [0.05, 0.05, 0.05]
    finally:
        supervisor.stop_all()
