"""CPU-bound C calls that must not stall a gevent web process.

Under gunicorn's gevent worker (gunicorn.conf.py) every request of a process is a greenlet on
one OS thread, and only I/O switches between them: a C call that computes for 35 ms without
yielding (an Argon2 hash) would stop all of the process's other requests, a thousand held
streams included, for that long. `off_loop(fn, ...)` runs such a call in gevent's pool of
native threads when the process is gevent-patched (the call releases the GIL, so the hub keeps
serving meanwhile), and simply calls it everywhere else (gthread, Celery, the CLI, tests).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def gevent_patched() -> bool:
    """True in a process whose standard library gevent has monkey-patched."""
    if "gevent" not in sys.modules:  # never import gevent where nothing uses it
        return False
    from gevent import monkey

    return monkey.is_module_patched("threading")


def off_loop(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """fn(*args, **kwargs), in a native thread when greenlets would otherwise wait for it."""
    if not gevent_patched():
        return fn(*args, **kwargs)
    from gevent import get_hub

    return get_hub().threadpool.apply(fn, args, kwargs)
