"""The record `scripts/run` keeps of the embedded services it started (Redis, the emulator).

On the embedded default the run command picks free ports, so a process started by hand in the
same checkout (`flask --app web.wsgi users ...`, the smoke test, a second worker) could not
know where Redis is. The run command writes what it chose to `DATA_DIR/run.env` with its own
pid, and removes it when it stops; `Settings` reads that file as its lowest-priority source
while the pid is alive. The environment and `.env` always win, and a file left by a run that
died is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

FILE_NAME = "run.env"
PID_KEY = "BAILIAN_RUN_PID"


def path_in(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def default_data_dir(repo_root: Path) -> Path:
    """DATA_DIR as Settings will see it, before Settings exists."""
    return Path(os.environ.get("DATA_DIR") or repo_root / "var")


def write(data_dir: Path, values: Mapping[str, str]) -> Path:
    path = path_in(data_dir)
    lines = [f"{PID_KEY}={os.getpid()}"]
    lines += [f"{key}='{value}'" for key, value in values.items()]
    # Only the owner may read it: it names the local services and the offline key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def remove(data_dir: Path) -> None:
    path_in(data_dir).unlink(missing_ok=True)


def live_owner(data_dir: Path) -> int | None:
    """The pid of the run command that wrote the file, if it is still running."""
    path = path_in(data_dir)
    if not path.exists():
        return None
    try:
        pid = int(dotenv_values(path).get(PID_KEY) or 0)
    except ValueError:
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else
    return pid


def live_file(data_dir: Path) -> Path | None:
    return path_in(data_dir) if live_owner(data_dir) else None
