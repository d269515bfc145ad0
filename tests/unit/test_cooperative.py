"""Under the gevent web worker, an Argon2 hash must not freeze the process's other requests:
it runs in gevent's thread pool (common/infra/cooperative.py), and the hub keeps switching."""

from __future__ import annotations

import subprocess
import sys

from tests.support.stack import REPO

# A ticker greenlet counts while one hash and one verification run, then without the pool.
PROGRAM = """
from gevent import monkey; monkey.patch_all()
import gevent
from common.accounts import passwords
from common.infra import cooperative
ticks = [0]
def tick():
    while True:
        ticks[0] += 1
        gevent.sleep(0.001)
gevent.spawn(tick); gevent.sleep(0.01)
def during(call):
    before = ticks[0]; call(); return ticks[0] - before
stored = passwords.hash_password("a long enough password")
pooled = [during(lambda: passwords.hash_password("a long enough password")),
          during(lambda: passwords.verify_password(stored, "a long enough password"))]
inline = during(lambda: passwords._hasher.hash("a long enough password"))
print(cooperative.gevent_patched(), min(pooled), inline)
"""


def test_password_hashing_yields_to_other_greenlets_under_gevent():
    run = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    patched, pooled, inline = run.stdout.split()
    assert patched == "True"
    assert int(pooled) > 0, "the ticker never ran while a hash was computed"
    assert int(inline) == 0  # the same call made in the hub's thread blocks every greenlet


def test_outside_gevent_the_call_is_made_in_place():
    from common.infra import cooperative

    assert not cooperative.gevent_patched()
    assert cooperative.off_loop(lambda a, b=0: a + b, 1, b=2) == 3
