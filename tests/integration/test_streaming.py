"""Streamed chat jobs through gunicorn, a real worker, Redis Streams and the emulator's SSE,
driven by the official `openai` SDK on /v1 and by plain HTTP on the platform's own API: the
same job, usage row and cost as a plain completion, and the stream as a view of the job that
survives its client, resumes by Last-Event-ID, and ends exactly once whatever interrupts it."""

from __future__ import annotations

import dataclasses
import json
import signal

import openai
import pytest
import redis
import requests

from common.jobs.models import JobStatus
from common.jobs.queue import STREAM_QUEUE, THREAD_QUEUES
from tests.integration.conftest import Platform
from tests.support import processes
from tests.support.jobs import directive, usage_rows, wait_for_job, wait_until

NATIVE = "/api/bailian/chat/completions"


def streams_worker(env, log_dir) -> processes.Process:
    return processes.worker(env, log_dir, name="streams-worker", pool="gevent",
                            concurrency=200, queues=(STREAM_QUEUE,))


@pytest.fixture(scope="module")
def platform(base_env, log_dir, emulator):
    """As deployed: streamed chats on a gevent worker of their own, the rest on threads."""
    running = Platform(base_env, processes.worker(base_env, log_dir, queues=THREAD_QUEUES),
                       processes.beat(base_env, log_dir), log_dir,
                       streamer=streams_worker(base_env, log_dir))
    yield running
    for proc in (running.worker, running.beat, running.streamer):
        proc.stop()


@pytest.fixture(scope="module")
def web(base_env, log_dir, platform):
    port = processes.free_port()
    env = {**base_env, "STREAM_KEEPALIVE_SECONDS": "2"}
    proc = processes.gunicorn(env, log_dir, port, name="stream-web", workers=1)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
def user(accounts):
    _, headers = accounts.headers("premium")
    return headers


@pytest.fixture
def sdk(web, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{web}/v1", max_retries=0, timeout=60,
                         api_key=user["Authorization"].removeprefix("Bearer "))


@dataclasses.dataclass
class Event:
    id: str | None
    data: str

    @property
    def json(self) -> dict:
        return json.loads(self.data)


def events(response: requests.Response):
    """The server-sent events of a streaming response, as they arrive."""
    event_id, data = None, []
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                yield Event(event_id, "\n".join(data))
            event_id, data = None, []
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])


def text_of(chunks) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c.get("choices"))


def post_stream(web, headers, content, *, model="qwen-plus", extra_headers=None, **body):
    return requests.post(f"{web}{NATIVE}", stream=True, timeout=60,
                         headers={**headers, **(extra_headers or {})},
                         json={"model": model, "stream": True,
                               "messages": [{"role": "user", "content": content}], **body})


def test_a_v1_stream_is_openai_chunks_whose_usage_is_the_usage_row(sdk, database):
    raw = sdk.chat.completions.with_raw_response.create(
        model="qwen-turbo", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream me a few words please"}])
    assert raw.headers["content-type"].startswith("text/event-stream")
    job_id = raw.headers["X-Job-ID"]
    chunks = list(raw.parse())
    assert all(c.object == "chat.completion.chunk" and c.id == f"chatcmpl-{job_id}"
               for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([piece for piece in content if piece]) > 1  # it did arrive in pieces
    assert "".join(content) == "Echo: stream me a few words please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None

    job = wait_for_job(database, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["choices"][0]["message"]["content"] == "".join(content)
    [row] = usage_rows(database, job_id)
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (
        final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens)
    assert not row.estimated and row.cost > 0


def test_the_native_api_streams_the_same_chunks_and_refuses_bad_input_as_an_envelope(
        web, user, database):
    bad = post_stream(web, user, "hi", model="gpt-4")
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/json"
    assert bad.json()["errors"][0]["field"] == "model"

    response = post_stream(web, user, "native streaming")
    assert response.status_code == 200
    received = list(events(response))
    assert received[-1].data == "[DONE]"
    chunks = [e.json for e in received[:-1]]
    assert all(e.id for e in received[:-1])  # every chunk can be resumed from
    assert text_of(chunks) == "Echo: native streaming"
    assert all("usage" not in c for c in chunks)  # not asked for
    job = wait_for_job(database, response.headers["X-Job-ID"])
    assert job.status == JobStatus.SUCCEEDED and len(usage_rows(database, job.id)) == 1


def test_a_client_that_disconnects_leaves_the_job_to_finish_with_exact_usage(
        web, user, database, emulator):
    marker = directive(chunk_ms=150)
    response = post_stream(web, user, f"a long answer that keeps coming {marker}")
    first = next(events(response))
    assert first.json["choices"][0]["delta"]["role"] == "assistant"
    response.close()  # gone after the first chunk

    job = wait_for_job(database, response.headers["X-Job-ID"], timeout=60)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["choices"][0]["message"]["content"] == \
        "Echo: a long answer that keeps coming"
    [row] = usage_rows(database, job.id)
    assert not row.estimated and row.output_tokens > 0
    assert emulator.calls_with(marker.id) == 1


def test_a_stream_resumes_from_last_event_id_with_every_remaining_chunk_once(
        web, user, database):
    marker = directive(chunk_ms=80)
    accepted = post_stream(web, user, f"resume after a few chunks of this {marker}",
                           extra_headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202
    job_id = accepted.json()["data"]["id"]
    url = f"{web}/api/jobs/{job_id}/stream"

    first = requests.get(url, headers=user, stream=True, timeout=60)
    head = []
    for event in events(first):
        head.append(event)
        if len(head) == 3:
            break
    first.close()

    rest = requests.get(url, headers={**user, "Last-Event-ID": head[-1].id}, stream=True,
                        timeout=60)
    tail = list(events(rest))
    assert tail[-1].data == "[DONE]"
    chunks = [e.json for e in head] + [e.json for e in tail[:-1]]
    assert text_of(chunks) == "Echo: resume after a few chunks of this"
    ids = [e.id for e in head + tail[:-1] if e.id]
    assert len(ids) == len(set(ids))  # nothing twice

    # After the end, a replay from the start is the whole stream again.
    again = list(events(requests.get(url, headers=user, stream=True, timeout=60)))
    assert text_of([e.json for e in again[:-1]]) == text_of(chunks)
    assert wait_for_job(database, job_id).status == JobStatus.SUCCEEDED


def test_cancel_mid_stream_stops_upstream_ends_the_stream_and_records_reported_usage(
        web, user, database, emulator):
    emulator.reset()
    marker = directive(chunk_ms=300)
    response = post_stream(web, user, "cancel me while I am still talking to you at length "
                                      f"{marker}")
    job_id = response.headers["X-Job-ID"]
    stream = events(response)
    received = [next(stream), next(stream)]
    canceled = requests.post(f"{web}/api/jobs/{job_id}/cancel", headers=user, timeout=10)
    assert canceled.status_code == 200
    received += list(stream)
    assert received[-1].data == "[DONE]"
    error = received[-2].json["error"]
    assert error["code"] == "job_canceled"

    job = wait_for_job(database, job_id)
    assert job.status == JobStatus.CANCELED
    [row] = wait_until(lambda: usage_rows(database, job_id), timeout=20,
                       message="no usage row for the canceled stream")
    assert not row.estimated  # DashScope had reported usage with its chunks
    assert row.output_tokens > 0
    assert row.input_tokens > 0 and row.cost > 0
    wait_until(lambda: emulator.stats()["streams"].get("disconnected", 0) >= 1, timeout=10,
               message="the worker kept reading the canceled stream")


def test_x_cancel_on_disconnect_cancels_the_job_when_the_client_goes(web, user, database):
    marker = directive(chunk_ms=300)
    response = post_stream(web, user, f"stop when I hang up on you {marker}",
                           extra_headers={"X-Cancel-On-Disconnect": "true"})
    next(events(response))
    response.close()
    job = wait_for_job(database, response.headers["X-Job-ID"], timeout=30)
    assert job.status == JobStatus.CANCELED
    wait_until(lambda: usage_rows(database, job.id), timeout=20,
               message="no usage row for the canceled stream")

    refused = post_stream(web, user, "x", extra_headers={"X-Cancel-On-Disconnect": "maybe"})
    assert refused.status_code == 400


def test_an_in_stream_upstream_error_ends_the_stream_with_an_error_and_fails_the_job(
        sdk, database):
    marker = directive(fault="stream-error", at=3, error=500)
    raw = sdk.chat.completions.with_raw_response.create(
        model="qwen-plus", stream=True,
        messages=[{"role": "user", "content": f"this breaks off midway through {marker}"}])
    job_id = raw.headers["X-Job-ID"]
    got = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            got.append(chunk)
    assert got  # the first deltas did arrive
    job = wait_for_job(database, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code and job.error_code in str(caught.value)
    assert job.attempts == 1  # not retried: the client already had part of the answer
    [row] = usage_rows(database, job_id)
    assert row.input_tokens > 0 and not row.estimated


def test_a_worker_killed_mid_stream_fails_the_job_once_and_tells_the_reader(
        web, user, database, emulator, platform):
    marker = directive(chunk_ms=400)
    response = post_stream(web, user, "the worker will not live to finish this sentence "
                                      f"{marker}")
    job_id = response.headers["X-Job-ID"]
    stream = events(response)
    next(stream), next(stream)

    platform.streamer.kill(signal.SIGKILL)
    platform.streamer = streams_worker(platform.env, platform.log_dir)

    rest = list(stream)  # the reader is told, on the connection it already has
    assert rest[-1].data == "[DONE]"
    assert rest[-2].json["error"]["code"] == "StreamInterrupted"
    job = wait_for_job(database, job_id)
    assert job.status == JobStatus.FAILED and job.error_code == "StreamInterrupted"
    [row] = usage_rows(database, job_id)
    assert row.estimated and row.output_tokens > 0
    assert emulator.calls_with(marker.id) == 1  # failed, not streamed a second time


def test_a_stream_only_model_answers_a_request_that_does_not_stream(sdk, database):
    completion = sdk.chat.completions.create(
        model="qwq-plus", messages=[{"role": "user", "content": "think first"}])
    message = completion.choices[0].message
    assert message.content == "Echo: think first"
    assert getattr(message, "reasoning_content", None)
    job_id = completion.id.removeprefix("chatcmpl-")
    [row] = usage_rows(database, job_id)
    assert row.output_tokens == completion.usage.completion_tokens > 0


def test_a_thinking_model_streams_its_reasoning_first(sdk):
    chunks = list(sdk.chat.completions.create(
        model="qwq-plus", stream=True, messages=[{"role": "user", "content": "reason"}]))
    kinds = ["reasoning" if getattr(c.choices[0].delta, "reasoning_content", None) else
             "content" if c.choices[0].delta.content else None for c in chunks]
    kinds = [k for k in kinds if k]
    assert kinds[0] == "reasoning" and kinds[-1] == "content"
    assert "reasoning" not in kinds[kinds.index("content"):]


def test_another_users_job_stream_is_not_found(web, user, accounts):
    accepted = post_stream(web, user, "mine", extra_headers={"Prefer": "respond-async"})
    job_id = accepted.json()["data"]["id"]
    _, stranger = accounts.headers()
    response = requests.get(f"{web}/api/jobs/{job_id}/stream", headers=stranger, timeout=10)
    assert response.status_code == 404
    bad = requests.get(f"{web}/api/jobs/{job_id}/stream",
                       headers={**user, "Last-Event-ID": "x"}, timeout=10)
    assert bad.status_code == 400


def test_fifty_open_streams_share_one_blocking_redis_read(web, user, database, redis_server):
    """A watched stream holds no Redis connection of its own: the web process blocks in one
    read for all of them (web/stream_hub.py), so open streams cannot exhaust Redis's clients.
    """
    redis_client = redis.Redis(*redis_server)
    before = redis_client.info("clients")["connected_clients"]
    responses = [post_stream(web, user, f"hold {i} {directive(chunk_ms=200)}")
                 for i in range(50)]
    firsts = [next(events(r)) for r in responses[:3]]  # the first jobs are streaming
    assert all(e.json["choices"][0]["delta"]["role"] == "assistant" for e in firsts)
    during = redis_client.info("clients")["connected_clients"]
    assert during - before < 25, (before, during)  # 50 blocked reads would be 50 more
    for response in responses:
        response.close()
    for response in responses:
        assert wait_for_job(database, response.headers["X-Job-ID"], timeout=120).status \
            == JobStatus.SUCCEEDED


def test_a_live_stream_is_relayed_from_the_published_entries_not_read_per_delta(
        web, user, redis_server):
    """Each delta reaches the relay on the process's one subscription, with the id of the entry
    it follows; the stream itself is read only to catch up (on arrival, and when a keep-alive
    passes without news), never once per delta."""
    redis_client = redis.Redis(*redis_server)

    def xreads() -> int:
        return redis_client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)

    before = xreads()
    words = 40
    response = post_stream(web, user, " ".join(["sea"] * words) + directive(chunk_ms=20))
    chunks = [e.json for e in events(response) if e.data != "[DONE]"]
    assert text_of(chunks).startswith("Echo: sea sea")
    assert len(chunks) > words
    assert xreads() - before <= 5, xreads() - before  # was one per delta


def test_a_stream_whose_events_are_gone_is_ended_from_the_job_row(web, user, database,
                                                                    redis_url):
    """Retention passed or Redis lost the events: a replay still ends, from the row, with the
    part of the answer the client does not have (all of it from the start; nothing it cannot
    place after a Last-Event-ID)."""
    accepted = post_stream(web, user, "kept only in the row", stream_options={
        "include_usage": True}, extra_headers={"Prefer": "respond-async"})
    job_id = accepted.json()["data"]["id"]
    url = f"{web}/api/jobs/{job_id}/stream"
    assert wait_for_job(database, job_id).status == JobStatus.SUCCEEDED
    ids = [e.id for e in events(requests.get(url, headers=user, stream=True, timeout=30))
           if e.id]
    redis.Redis.from_url(redis_url).delete(f"bailian:job:{job_id}:events")

    replay = list(events(requests.get(url, headers=user, stream=True, timeout=30)))
    assert replay[-1].data == "[DONE]"
    chunks = [e.json for e in replay[:-1]]
    assert text_of(chunks) == "Echo: kept only in the row"
    [row] = usage_rows(database, job_id)
    assert chunks[-1]["usage"]["total_tokens"] == row.total_tokens

    resumed = list(events(requests.get(url, headers={**user, "Last-Event-ID": ids[1]},
                                       stream=True, timeout=30)))
    assert resumed[-1].data == "[DONE]"
    assert text_of([e.json for e in resumed[:-1]]) == ""  # it cannot know what is missing
