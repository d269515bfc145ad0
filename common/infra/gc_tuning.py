"""Garbage collection for long-lived server processes that hold many open streams.

CPython's full (generation 2) collection walks every tracked object and stops the process
while it does. A streams worker holding 1,000 streams tracks about 400,000 objects; with the
default thresholds (700, 10, 10) it ran a full collection every 5-8 s that took 180-420 ms
and found nothing to free (the streams' objects die by reference counting), stalling every
stream at once: those pauses were the p99 of the delay between DashScope's delta and the
client (`scripts/bench open_streams`). Two measures, both from CPython's own gc module:

- freeze what exists once the process is ready (modules, the app, settings: never garbage),
  so no collection walks it again;
- collect the older generations less often. Reference cycles are still found, later; the
  youngest generation still runs often, so short-lived cycles do not pile up.
"""

from __future__ import annotations

import gc

# (youngest, middle, oldest): 10x fewer young collections than the default, and a full one
# only after 100 middle ones (it also waits, as always, until the long-lived objects grew by
# a quarter since the last).
SERVER_THRESHOLDS = (7_000, 20, 100)


def tune_for_server() -> None:
    """Call once per process, after its start-up imports and before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
