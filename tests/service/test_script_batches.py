"""A script called by many threads at once is sent in shared round trips (a group commit),
each caller getting its own answer, each call running exactly once, against the real Redis."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import redis

from common.infra.script_batches import ScriptBatches
from tests.support import processes
from tests.support.stack import REDIS_HOST, REDIS_PORT, redis_db

# Counts its runs; `slow` keeps Redis busy for a while, so the callers behind it queue up.
SCRIPT = """
if ARGV[2] == 'slow' then
  local until_ = tonumber(redis.call('TIME')[1]) * 1000000 + redis.call('TIME')[2] + 200000
  while tonumber(redis.call('TIME')[1]) * 1000000 + redis.call('TIME')[2] < until_ do end
end
redis.call('INCR', KEYS[1])
return 'answer ' .. ARGV[1]
"""


@pytest.fixture
def client(redis_server):
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db("app"),
                         decode_responses=True)
    client.delete("batches:runs")
    yield client
    client.delete("batches:runs")


def _call_together(batches: ScriptBatches, count: int, slow_first: bool = True) -> list:
    started = threading.Event()

    def call(i: int):
        if i:
            started.wait()
        else:
            started.set()  # the first one leads the first batch
        return batches(["batches:runs"], [i, "slow" if slow_first and not i else "fast"])

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_concurrent_callers_share_round_trips_and_each_gets_its_own_answer(client):
    batches = ScriptBatches(client, SCRIPT)
    answers = _call_together(batches, 40)
    assert answers == [f"answer {i}" for i in range(40)]
    assert int(client.get("batches:runs")) == 40  # each ran once
    assert batches.batches_sent <= 5, batches.batches_sent  # 40 plain calls: 40 round trips


def test_a_flushed_script_is_loaded_again_and_runs_once_per_call(client):
    batches = ScriptBatches(client, SCRIPT)
    assert batches(["batches:runs"], [0, "fast"]) == "answer 0"
    client.script_flush()
    assert _call_together(batches, 10, slow_first=False) == [f"answer {i}" for i in range(10)]
    assert int(client.get("batches:runs")) == 11


def test_an_unreachable_redis_fails_each_call_and_the_next_ones_go_through(client):
    down = redis.Redis(host=REDIS_HOST, port=processes.free_port(), socket_connect_timeout=1,
                       socket_timeout=1, decode_responses=True, retry=None)
    batches = ScriptBatches(down, SCRIPT)
    with pytest.raises(redis.ConnectionError):
        batches(["batches:runs"], [0, "fast"])
    batches.redis = client  # the server is back
    assert batches(["batches:runs"], [1, "fast"]) == "answer 1"


# The streams worker's greenlets, killed mid-call as a task's time limit kills them.
KILLED = """
import sys
from gevent import monkey; monkey.patch_all()
import gevent, redis
from common.infra.script_batches import ScriptBatches
from tests.service.test_script_batches import SCRIPT

client = redis.Redis(port=int(sys.argv[1]), db=int(sys.argv[2]), decode_responses=True)
batches = ScriptBatches(client, SCRIPT)

def call(i, speed):
    return batches(["batches:runs"], [i, speed])

sender = gevent.spawn(call, 0, "slow")   # sends the first batch and waits on Redis
gevent.sleep(0.05)
handed = gevent.spawn(call, 1, "fast")   # queued first: it will be handed the sending
waiting = gevent.spawn(call, 2, "fast")  # killed while it waits
last = gevent.spawn(call, 3, "fast")
gevent.sleep(0.05)
gevent.kill(sender, gevent.Timeout)      # the sender dies before Redis answered
gevent.kill(waiting, gevent.Timeout)
print(handed.get(timeout=10), "|", last.get(timeout=10), "|",
      gevent.spawn(call, 4, "fast").get(timeout=10))
"""


def test_callers_killed_mid_call_leave_the_others_answered_and_the_sending_going(client):
    import subprocess
    import sys

    from tests.support.stack import REPO

    done = subprocess.run([sys.executable, "-c", KILLED, str(REDIS_PORT), str(redis_db("app"))],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answer 1 | answer 3 | answer 4"
