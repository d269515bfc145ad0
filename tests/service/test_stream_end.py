"""A relayed stream ends from the job its published end carries: the usage chunk and the
error are the ending's own, with no read of the row (the streamed analogue of a wake-up that
carries the job, tests/service/test_waiting.py)."""

from __future__ import annotations

import concurrent.futures
import json
import time
from decimal import Decimal

import pytest

from common.billing.pricing import Usage
from common.jobs import queries
from common.jobs.models import JobStatus
from common.jobs.queue import STREAM_CHAT
from common.jobs.streams import chunk
from common.jobs.views import JobUsage
from tests.service.test_lifecycle import LEASE, chat_billed, usage_count

URL = "/api/bailian/chat/completions"
BODY = {"model": "qwen-turbo", "messages": [{"role": "user", "content": "hello"}],
        "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def streaming_client(service_settings):
    from web.app import create_app

    return create_app(service_settings).test_client()


def _published(broker) -> str:
    """The id of the streamed job once its message is published."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = [m for m in broker.drain() if m.task == STREAM_CHAT]
        if runs:
            return runs[0].args[0]
        time.sleep(0.005)
    raise AssertionError("the job was never published")


def _data(events) -> str:
    """The next SSE event's data."""
    event = next(events).decode()
    return next(line[5:].strip() for line in event.splitlines() if line.startswith("data:"))


def test_a_stream_ends_from_the_job_its_published_end_carries_not_from_the_row(
        streaming_client, accounts, service_lifecycle, database, broker):
    """The carried job wins over the row: the row still says running, with no usage row, yet
    the stream ends with the carried job's usage chunk, then [DONE]."""
    _, headers = accounts.headers()
    broker.drain()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The test client answers once the first event is out: the first delta, below.
        future = pool.submit(streaming_client.post, URL, json=BODY, headers=headers)
        job_id = _published(broker)
        claim = service_lifecycle.claim(job_id, lease_seconds=LEASE)
        streams = service_lifecycle.streams
        streams.append(job_id, chunk(job_id=job_id, model="qwen-turbo", created=0,
                                     delta={"role": "assistant", "content": "hello"},
                                     finish_reason="stop"),
                       Usage(), (0, 0, 0), first=True)
        response = future.result(timeout=10)
    assert response.status_code == 200, response.get_data(as_text=True)
    events = iter(response.response)
    assert json.loads(_data(events))["choices"][0]["delta"]["content"] == "hello"

    # The relay now watches the live stream: the end it is told is the one it ends with.
    billed = chat_billed(job_id, tokens=(7, 3))
    with database.connect() as conn:
        running = queries.find(conn, job_id)
    assert running.status == JobStatus.RUNNING and claim is not None
    ended = running.model_copy(update={
        "status": JobStatus.SUCCEEDED, "result": billed.result,
        "usage": JobUsage(input_tokens=7, output_tokens=3, total_tokens=10,
                          cost=Decimal("0.00001"), currency="CNY")})
    streams.end(job_id, JobStatus.SUCCEEDED.value, ended.model_dump_json())

    usage = json.loads(_data(events))
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert _data(events) == "[DONE]"
    with database.connect() as conn:
        assert queries.find(conn, job_id).status == JobStatus.RUNNING
    assert usage_count(database, job_id) == 0
