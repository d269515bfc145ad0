"""Fewer malloc arenas for the threaded web and worker processes.

glibc gives threads that allocate their own arenas (up to eight per core) and rarely hands
memory freed in them back to the system, so a gunicorn gthread worker (16 threads) or a Celery
threads worker (32) keeps growing under load for no gain: tens of MB per process in
`scripts/bench`, at the same throughput with two arenas (the threads wait on I/O, not on
malloc's locks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas before the process starts its threads. True when applied; False on
    another libc, or when MALLOC_ARENA_MAX is set (glibc has applied the operator's value)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl, macOS: no such knob
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
