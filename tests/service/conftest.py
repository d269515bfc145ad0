"""The job lifecycle driven directly: its use cases against the real MariaDB and Redis, with
no worker process. Published steps land in a private broker database, where the tests read
them; wake-ups are caught on the events channel; metrics are read from this process."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import threading
import uuid
from decimal import Decimal

import pytest
import redis as redis_lib
from prometheus_client import REGISTRY

from common.infra.orm import utcnow
from common.jobs import events, transitions
from common.jobs.lifecycle import JobLifecycle
from common.jobs.models import JobKind, JobStatus
from common.jobs.queue import QUEUES, make_celery
from tests.support.stack import REDIS_HOST, REDIS_PORT, redis_db


@dataclasses.dataclass(frozen=True)
class Published:
    task: str
    args: list
    countdown: bool  # published with an ETA


class Broker:
    """The private broker database the lifecycle under test publishes to."""

    def __init__(self, db: int) -> None:
        self.url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
        self.client = redis_lib.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        self.client.flushdb()

    def drain(self) -> list[Published]:
        """Every message published since the last drain, oldest first."""
        messages = []
        for queue in QUEUES:
            while (raw := self.client.rpop(queue)) is not None:
                message = json.loads(raw)
                args = json.loads(base64.b64decode(message["body"]))[0]
                messages.append(Published(message["headers"]["task"], args,
                                          message["headers"].get("eta") is not None))
        return messages

    def steps_for(self, job_id: str) -> list[Published]:
        return [m for m in self.drain() if m.args and m.args[0] == job_id]


class WakeUps:
    """Listens on the wake-up channel (channels are server-wide: filter by job id)."""

    def __init__(self) -> None:
        self.pubsub = redis_lib.Redis(host=REDIS_HOST, port=REDIS_PORT,
                                      decode_responses=True).pubsub(
            ignore_subscribe_messages=True)
        self.pubsub.subscribe(events.JOB_EVENTS_CHANNEL)
        self.pubsub.get_message(timeout=1)  # the subscribe confirmation
        self.seen: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def of(self, job_id: str, timeout: float = 1.0) -> list[str | None]:
        """The views (JSON, or None for a bare wake-up) announced for `job_id` so far."""
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        while dt.datetime.now() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                self.seen.append(events.split(message["data"]))
        return [view for announced, view in self.seen if announced == job_id]

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture(scope="session")
def broker(redis_server) -> Broker:
    return Broker(redis_db("service_broker"))


@pytest.fixture
def wakeups():
    listener = WakeUps()
    yield listener
    listener.close()


@pytest.fixture(scope="session")
def service_settings(settings, broker):
    return settings.model_copy(update={"celery_broker_url": broker.url, "job_max_attempts": 3})


@pytest.fixture(scope="session")
def service_lifecycle(service_settings, database) -> JobLifecycle:
    from common.infra.redis_client import redis_from_settings

    return JobLifecycle.of(settings=service_settings, database=database,
                           redis_client=redis_from_settings(service_settings),
                           celery=make_celery(service_settings))


@pytest.fixture
def make_job(database, accounts, broker):
    """Insert a job row as a committed submission leaves it (nothing published)."""
    owner = accounts.create()

    def make(kind: JobKind = JobKind.CHAT, *, deadline_in: float = 600, **columns) -> str:
        job_id = str(uuid.uuid4())
        now = utcnow()
        request = {"messages": [{"role": "user", "content": "hi"}], "parameters": {}} \
            if kind == JobKind.CHAT else {"prompt": "a fox", "parameters": {"n": 1}}
        values = {
            "id": job_id, "user_id": owner["id"], "kind": kind,
            "model": "qwen-turbo" if kind == JobKind.CHAT else "wanx-v1",
            "status": JobStatus.QUEUED, "request": request, "attempts": 0, "polls": 0,
            "request_fingerprint": "0" * 64, "created_at": now, "updated_at": now,
            "enqueued_at": now, "path": "dashscope", "compute_cost": Decimal(0),
            "deadline_at": now + dt.timedelta(seconds=deadline_in), **columns}
        with database.transaction() as conn:
            transitions.insert_job(conn, values)
        return job_id

    make.owner = owner
    broker.drain()
    return make


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
