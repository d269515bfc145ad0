"""The generation endpoint's contract up to the queue: per-model validation and the job."""

from __future__ import annotations

from common.jobs.models import Job

URL = "/api/bailian/generation"


def gen(prompt: str, model: str = "wanx-v1", **parameters) -> dict:
    return {"model": model, "prompt": prompt, "parameters": parameters}


def test_validation_per_model(client, accounts):
    _, headers = accounts.headers()
    cases = [
        (gen("x", size="999*999"), "parameters.size"),
        (gen("x", size="2048*2048", model="wanx2.1-t2i-turbo"), "parameters.size"),
        (gen("x", style="<cubism>"), "parameters.style"),
        (gen("x", style="<anime>", model="wanx2.1-t2i-turbo"), "parameters.style"),
        (gen("x", n=5), "parameters.n"),
        (gen("x", seed=-1), "parameters.seed"),
        (gen("x", prompt_extend=True), "parameters.prompt_extend"),
        (gen("x" * 501), "prompt"),
        (gen("x", quality="ultra"), "parameters.quality"),
        (gen("", ), "prompt"),
        ({"model": "dall-e", "prompt": "x"}, "model"),
        ({"model": "wanx-v1", "prompt": "x", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = client.post(URL, headers=headers, json=body)
        assert response.status_code == 400, (body, response.json)
        assert field in {e["field"] for e in response.json["errors"]}, (body, response.json)


def test_async_generation_commits_the_request_for_the_worker(client, accounts, database):
    _, headers = accounts.headers()
    response = client.post(URL, headers={**headers, "Prefer": "respond-async"}, json={
        "model": "wanx2.1-t2i-turbo", "prompt": "a boat", "negative_prompt": "rain",
        "seed": 5, "parameters": {"size": "1280x720", "n": 2, "watermark": False}})
    assert response.status_code == 202
    job = response.json["data"]
    assert job["kind"] == "image" and job["status"] == "queued"
    with database.session() as session:
        request = session.get(Job, job["id"]).request
    assert request == {"prompt": "a boat", "negative_prompt": "rain", "quality": None,
                       "parameters": {"size": "1280*720", "n": 2, "seed": 5,
                                      "watermark": False}}


def test_negative_prompt_in_both_places_is_ambiguous(client, accounts):
    _, headers = accounts.headers()
    response = client.post(URL, headers=headers, json={
        "model": "wanx-v1", "prompt": "x", "negative_prompt": "a",
        "parameters": {"negative_prompt": "b"}})
    assert response.status_code == 400
    assert response.json["errors"][0]["field"] == "negative_prompt"
