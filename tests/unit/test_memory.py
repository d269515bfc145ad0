"""The threaded processes cap glibc's malloc arenas (their peak RSS depends on it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.stack import REPO

# Eight threads allocate at once, then glibc lists its arenas on stderr.
PROGRAM = """
import ctypes, ctypes.util, sys, threading
from common.infra.memory import limit_malloc_arenas
applied = limit_malloc_arenas() if sys.argv[1] == "limit" else None
barrier = threading.Barrier(8)
def allocate():
    blocks = [bytearray(4096) for _ in range(64)]
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
print(applied)
"""


def _arenas(mode: str, **env) -> tuple[int, str]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**environment, **env}, check=True)
    return len(re.findall(r"^Arena \d+:", done.stderr, re.M)), done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_threads_share_two_arenas_once_limited():
    unlimited, _ = _arenas("default")
    limited, applied = _arenas("limit")
    assert unlimited > 2, "the threads should have made arenas of their own"
    assert applied == "True"
    assert limited <= 2


def test_the_operators_malloc_arena_max_wins():
    arenas, applied = _arenas("limit", MALLOC_ARENA_MAX="4")
    assert applied == "False"
    assert arenas <= 4
