"""The worker's consuming check (worker/health.py) on its own: the file's age decides."""

from __future__ import annotations

import os

from worker.health import check


def test_a_fresh_file_is_healthy_and_a_stale_or_missing_one_is_not(tmp_path):
    path = tmp_path / "consuming"
    assert "never consumed" in check(path, 10)
    path.touch()
    assert check(path, 10) is None
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 11))
    assert check(path, 10).startswith("not consuming for 11s")
    assert check(None, 10) == "WORKER_HEALTH_FILE is not set"
