"""Garbage collection for long-lived server processes that hold many open streams.

CPython's collections stop the process while they walk their generation, and every open
stream waits. What a probe on `gc.callbacks` in the streams worker holding 1,000 streams
(`python -m bench open_streams`) showed:
- the streams' objects die by reference counting: collections found next to nothing to free;
- a generation's walk costs what is alive in it, and 1,000 streams in flight keep about 40
  objects each alive between deltas (the SDK's response objects, gevent's timers and waiters):
  a young collection took 5-30 ms, a middle one about 100 ms, a full one 100-400 ms;
- collections are triggered by growth (allocations minus deallocations), so they came in
  bursts while streams were opening, and the middle and full ones were the stalls that made
  the tail of the delay between DashScope's delta and the client.

So, with CPython's own gc module:
- freeze what exists once the process is ready (modules, the app, settings: never garbage),
  so no collection walks it again;
- collect the youngest generation by growth, less often than the default (short-lived cycles,
  such as a caught exception's traceback, are still freed within seconds);
- collect the older generations on a timer instead (`GC_FULL_COLLECTION_SECONDS`, 10 minutes
  by default): a cycle that outlived a young collection is freed within that interval, and the
  one stall of a full collection comes at a known rate, not whenever a burst of streams opens.
  Measured at 1,000 open streams: a full collection after 2 minutes stalled the streams worker
  for 200 ms and freed 523 objects, so the garbage that waits is small and the stall is rare.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

logger = logging.getLogger(__name__)

# The youngest generation every 7,000 objects of growth (10x the default); the middle and the
# oldest never by count (the timer below collects them).
SERVER_THRESHOLDS = (7_000, 1_000_000, 1_000_000)


def tune_for_server(full_collection_seconds: float) -> None:
    """Call once per process, after its start-up imports and before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
    # A thread, or a greenlet where gevent patched threading: either way it only sleeps and
    # collects (the collection holds the interpreter, as an automatic one would).
    threading.Thread(target=_collect_every, args=(full_collection_seconds,),
                     name="gc-full-collection", daemon=True).start()


def _collect_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        started = time.perf_counter()
        freed = gc.collect()
        logger.debug("full collection freed %s objects in %.1f ms", freed,
                     (time.perf_counter() - started) * 1000)
