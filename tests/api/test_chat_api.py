"""The chat endpoint's contract up to the queue: validation, async answers, idempotency.

No worker consumes these jobs here (tests/integration runs them), so requests ask for
`Prefer: respond-async` and assert on what was committed.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from common.jobs.models import Job

ASYNC = {"Prefer": "respond-async"}


def chat(model="qwen-plus", content="hello", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def _jobs_of(database, user_id) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id))


@pytest.mark.parametrize("body, fields", [
    ({"messages": [{"role": "user", "content": "hi"}]}, {"model"}),
    (chat(model="gpt-4"), {"model"}),
    ({"model": "qwen-plus", "messages": []}, {"messages"}),
    ({"model": "qwen-plus", "messages": "hi"}, {"messages"}),
    ({"model": "qwen-plus", "messages": [{"role": "robot", "content": "hi"}]},
     {"messages.0.role"}),
    ({"model": "qwen-plus", "messages": [{"role": "user", "content": 42}]},
     {"messages.0.content"}),
    ({"model": "qwen-plus", "messages": [{"role": "user", "content": ""}]},
     {"messages.0.content"}),
    ({"model": "qwen-plus", "messages": [{"role": "user"}]}, {"messages.0.content"}),
    (chat(temperature=2.5), {"temperature"}),
    (chat(temperature=-0.1), {"temperature"}),
    (chat(temperature="hot"), {"temperature"}),
    (chat(max_tokens=0), {"max_tokens"}),
    (chat(max_tokens=100000), {"max_tokens"}),
    (chat(max_tokens=1.5), {"max_tokens"}),
    (chat(top_p=0), {"top_p"}),
    (chat(seed=-1), {"seed"}),
    (chat(stop=[]), {"stop"}),
    (chat(stream="yes"), {"stream"}),
    (chat(stream_options={"include_usage": True}), {"stream_options"}),
    (chat(stream=True, stream_options={"include_usage": 1}), {"stream_options.include_usage"}),
    (chat(user_id=5, status="succeeded"), {"user_id", "status"}),
    # Message shapes of tools and images (web/request_models.ChatMessage).
    ({"model": "qwen-plus", "messages": [{"role": "tool", "content": "r"}]},
     {"messages.0.tool_call_id"}),
    ({"model": "qwen-plus", "messages": [{"role": "user", "content": "x",
                                          "tool_call_id": "c"}]}, {"messages.0.tool_call_id"}),
    ({"model": "qwen-plus", "messages": [{"role": "user", "content": "x", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
     {"messages.0.tool_calls"}),
    ({"model": "qwen-plus", "messages": [{"role": "assistant"}]}, {"messages.0.content"}),
    ({"model": "qwen-vl-max", "messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]}]},
     {"messages.0.content"}),
    ({"model": "qwen-vl-max", "messages": [{"role": "user", "content": [
        {"type": "audio", "audio": "x"}]}]}, {"messages.0.content.0"}),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}] * 2), {"tools"}),
    (chat(tools=[{"type": "function", "function": {"name": "bad name"}}]),
     {"tools.0.function.name"}),
    (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": 7}}}}}]), {"tools.0.function.parameters"}),
    (chat(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "array"}}}), {"response_format.json_schema.schema"}),
    (chat(response_format={"type": "yaml"}), {"response_format"}),
    (chat(tool_choice="sometimes"), {"tool_choice"}),
    (chat(top_logprobs=2), {"top_logprobs"}),
    (chat(n=5), {"n"}),
])
def test_invalid_requests_get_per_field_400s_and_create_nothing(client, accounts, database,
                                                                body, fields):
    account, headers = accounts.headers()
    response = client.post("/api/bailian/chat/completions", json=body, headers=headers)
    assert response.status_code == 400, response.json
    assert response.json["code"] == 400
    assert fields <= {e["field"] for e in response.json["errors"]}
    assert _jobs_of(database, account["id"]) == 0


def test_chat_requires_authentication(client):
    assert client.post("/api/bailian/chat/completions", json=chat()).status_code == 401


def test_async_submission_answers_202_with_the_job_and_location(client, accounts, database):
    account, headers = accounts.headers()
    response = client.post("/api/bailian/chat/completions",
                           json=chat(temperature=0.7, max_tokens=64, top_p=0.9, seed=7,
                                     stop=["\n\n"]),
                           headers={**headers, **ASYNC, "X-Request-ID": "corr-async-1"})
    assert response.status_code == 202
    job = response.json["data"]
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert job["status"] == "queued" and job["kind"] == "chat" and job["model"] == "qwen-plus"
    with database.session() as session:
        row = session.get(Job, job["id"])
        assert row.user_id == account["id"]
        assert row.correlation_id == "corr-async-1"
        assert row.request["parameters"] == {"temperature": 0.7, "max_tokens": 64, "top_p": 0.9,
                                             "seed": 7, "stop": ["\n\n"]}
    polled = client.get(response.headers["Location"], headers=headers)
    assert polled.status_code == 200 and polled.json["data"]["id"] == job["id"]


def test_same_idempotency_key_and_body_returns_the_same_job(client, accounts, database):
    account, headers = accounts.headers()
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = client.post("/api/bailian/chat/completions", json=chat(),
                        headers={**headers, **ASYNC, **key})
    second = client.post("/api/bailian/chat/completions", json=chat(),
                         headers={**headers, **ASYNC, **key})
    assert first.json["data"]["id"] == second.json["data"]["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _jobs_of(database, account["id"]) == 1

    conflict = client.post("/api/bailian/chat/completions", json=chat(content="different"),
                           headers={**headers, **ASYNC, **key})
    assert conflict.status_code == 409
    assert _jobs_of(database, account["id"]) == 1


def test_idempotency_keys_are_per_user(client, accounts):
    _, alice = accounts.headers()
    _, bob = accounts.headers()
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    a = client.post("/api/bailian/chat/completions", json=chat(), headers={**alice, **ASYNC, **key})
    b = client.post("/api/bailian/chat/completions", json=chat(), headers={**bob, **ASYNC, **key})
    assert a.json["data"]["id"] != b.json["data"]["id"]


def test_invalid_idempotency_key_is_400(client, accounts):
    _, headers = accounts.headers()
    response = client.post("/api/bailian/chat/completions", json=chat(),
                           headers={**headers, **ASYNC, "Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert response.json["errors"][0]["field"] == "Idempotency-Key"
