"""Server processes collect the young generation by growth and the older ones on a timer."""

from __future__ import annotations

import subprocess
import sys

from tests.support.stack import REPO

# In a process of its own: tuning freezes and re-thresholds the whole interpreter.
PROGRAM = """
import gc, threading, weakref
from common.infra.gc_tuning import SERVER_THRESHOLDS, tune_for_server

tune_for_server(0.5)
assert gc.get_threshold() == SERVER_THRESHOLDS, gc.get_threshold()
assert gc.get_freeze_count() > 0  # the start-up objects are out of every walk

class Node:
    pass

freed = threading.Event()
node = Node()
node.self = node  # a reference cycle: only a collection frees it
weakref.finalize(node, freed.set)
gc.collect(0)  # it outlives a young collection while in use, as a request's objects do
del node
churn = [[i] for i in range(50_000)]  # growth: young collections run, not older ones
del churn
assert not freed.is_set(), "an older generation was collected by count"
assert freed.wait(10), "the timer never collected the older generations"
print("ok")
"""


def test_a_cycle_in_an_older_generation_is_freed_by_the_timer_not_by_counts():
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
