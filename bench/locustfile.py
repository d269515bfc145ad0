"""Load-test a running deployment with a realistic mix of clients (locust).

    .venv/bin/locust -f bench/locustfile.py --host https://bailian.example.com
    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000 \\
        --headless --users 50 --spawn-rate 5 --run-time 5m --csv var/load

Every simulated client logs in once, then mixes what real clients do: synchronous chats (the
most common), asynchronous chats and Wanx generations that it polls to the end the way the API
asks (its Location, Retry-After), and reads of its jobs and usage. Jobs are named by route, so
locust's table shows one line per kind of request, polls included.

Environment:
    BAILIAN_USERNAME, BAILIAN_PASSWORD   an existing account (required); its tier's rate
                                         limits apply, and a 429 counts as a failure
    BAILIAN_CHAT_MODEL                   qwen-turbo
    BAILIAN_IMAGE_MODEL                  wanx-v1
    BAILIAN_CHAT_PROMPT                  the user message of every chat
    BAILIAN_IMAGE_PROMPT                 the prompt of every generation
    BAILIAN_JOB_TIMEOUT                  seconds a client polls a job before failing it (600)

Against the offline profile's emulator, a prompt can carry a directive, for example
BAILIAN_IMAGE_PROMPT='a cat [[emulator: duration_s=5]]'.
"""

from __future__ import annotations

import os
import time
import uuid

from locust import HttpUser, between, task

CHAT = "/api/bailian/chat/completions"
GENERATION = "/api/bailian/generation"
TERMINAL = {"succeeded", "failed", "canceled"}


def _setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"set {name} (see bench/locustfile.py)")
    return value


class PlatformClient(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        response = self.client.post("/api/auth/login", name="login", json={
            "username": _setting("BAILIAN_USERNAME"), "password": _setting("BAILIAN_PASSWORD")})
        response.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {response.json()['data']['access_token']}"
        self.chat_model = _setting("BAILIAN_CHAT_MODEL", "qwen-turbo")
        self.image_model = _setting("BAILIAN_IMAGE_MODEL", "wanx-v1")
        self.job_timeout = float(_setting("BAILIAN_JOB_TIMEOUT", "600"))

    def _chat_body(self) -> dict:
        prompt = _setting("BAILIAN_CHAT_PROMPT", "Summarise the plot of Hamlet in one line.")
        # A unique suffix, so no cache anywhere answers for the upstream.
        return {"model": self.chat_model, "messages": [
            {"role": "user", "content": f"{prompt} ({uuid.uuid4().hex[:8]})"}]}

    @task(6)
    def sync_chat(self) -> None:
        with self.client.post(CHAT, json=self._chat_body(), name="chat (sync)",
                              catch_response=True) as response:
            if response.status_code == 202:  # the wait ran out: the job goes on, poll it
                response.success()
                self._follow(response)
            elif response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(3)
    def async_chat(self) -> None:
        self._submit(CHAT, self._chat_body(), name="chat (async)")

    @task(1)
    def generation(self) -> None:
        prompt = _setting("BAILIAN_IMAGE_PROMPT", "A lighthouse at dawn, watercolour")
        self._submit(GENERATION, {"model": self.image_model, "prompt": prompt,
                                  "parameters": {"n": 1}}, name="generation (async)")

    @task(2)
    def list_jobs(self) -> None:
        self.client.get("/api/jobs?limit=20", name="/api/jobs")

    @task(1)
    def usage(self) -> None:
        self.client.get("/api/usage?group_by=model", name="/api/usage")

    def _submit(self, path: str, body: dict, *, name: str) -> None:
        with self.client.post(path, json=body, headers={"Prefer": "respond-async"}, name=name,
                              catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
        self._follow(response)

    def _follow(self, accepted) -> None:
        """Poll a job as the API asks (Location, Retry-After) until it ends."""
        location = accepted.headers["Location"]
        delay = float(accepted.headers.get("Retry-After", "1"))
        deadline = time.monotonic() + self.job_timeout
        while True:
            time.sleep(delay)
            with self.client.get(location, name="/api/jobs/[id] (poll)",
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
                    return
                job = response.json()["data"]
                if job["status"] in TERMINAL:
                    if job["status"] != "succeeded":
                        response.failure(f"job {job['id']} {job['status']}: {job.get('error')}")
                    return
                if time.monotonic() > deadline:
                    response.failure(f"job {job['id']} still {job['status']} after "
                                     f"{self.job_timeout:g}s")
                    return
            delay = float(response.headers.get("Retry-After", "1"))
