"""Smoke-test a running bailian-backend: health, readiness, login, chat (sync, async and
streamed), generation, jobs, usage and metrics, against any base URL.

    python test_qwen_apis.py --base-url https://bailian.example.com --username ops \\
        --password '...'            (or BAILIAN_BASE_URL / BAILIAN_USERNAME / BAILIAN_PASSWORD)

Prints a table of endpoint, status, latency, tokens and cost, then the success rate; exits
non-zero when fewer than --min-success (default 80 %) of the checks pass. Uses real model
calls: about three short chat completions and one image.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Callable

import requests


@dataclasses.dataclass
class Check:
    name: str
    endpoint: str
    status: int | None = None
    latency_ms: float | None = None
    tokens: int | None = None
    cost: float | None = None
    ok: bool = False
    note: str = ""


class Smoke:
    def __init__(self, base_url: str, username: str, password: str, *, chat_model: str,
                 image_model: str, timeout: float) -> None:
        self.base = base_url.rstrip("/")
        self.username, self.password = username, password
        self.chat_model, self.image_model = chat_model, image_model
        self.timeout = timeout
        self.http = requests.Session()
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.checks: list[Check] = []
        self.job_ids: list[str] = []

    # --- plumbing ------------------------------------------------------------------------

    def call(self, name: str, method: str, path: str, expect: tuple[int, ...], *,
             verify: Callable[[requests.Response, Check], None] | None = None,
             **kwargs) -> requests.Response | None:
        check = Check(name, f"{method} {path.split('?')[0]}")
        self.checks.append(check)
        headers = kwargs.pop("headers", {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        started = time.perf_counter()
        try:
            response = self.http.request(method, path if path.startswith("http")
                                         else f"{self.base}{path}", headers=headers,
                                         timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            check.note = f"{type(exc).__name__}: {exc}"[:120]
            return None
        check.latency_ms = (time.perf_counter() - started) * 1000
        check.status = response.status_code
        if response.status_code not in expect:
            check.note = f"expected {'/'.join(map(str, expect))}: {response.text[:100]}"
            return response
        try:
            if verify:
                verify(response, check)
            check.ok = True
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            check.note = f"unexpected body: {exc!r}"[:120]
        return response

    def wait_for_job(self, job_id: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"{self.base}/api/jobs/{job_id}", timeout=self.timeout,
                                headers={"Authorization": f"Bearer {self.token}"}).json()["data"]
            if job["status"] in ("succeeded", "failed", "canceled"):
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} not finished after {self.timeout:g}s")

    def _job_cost(self, check: Check, job: dict) -> None:
        usage, cost = job.get("usage") or {}, job.get("cost") or {}
        check.tokens = usage.get("total_tokens") or usage.get("image_count")
        check.cost = cost.get("amount")

    # --- the checks ----------------------------------------------------------------------

    def run(self) -> list[Check]:
        self.call("health", "GET", "/health", (200,),
                  verify=lambda r, c: _expect(r.json()["status"] == "healthy"))
        self.call("liveness", "GET", "/health/live", (200,),
                  verify=lambda r, c: _expect(r.json()["status"] == "alive"))
        self.call("readiness", "GET", "/health/ready", (200,),
                  verify=lambda r, c: _expect(r.json()["status"] == "ready"))
        if not self._login():
            return self.checks
        self.call("current user", "GET", "/api/auth/me", (200,),
                  verify=lambda r, c: _expect(r.json()["data"]["username"] == self.username))
        self._chat_sync()
        self._chat_async()
        self._chat_stream()
        self._generation()
        self.call("list jobs", "GET", "/api/jobs?limit=10", (200,),
                  verify=lambda r, c: _expect(set(self.job_ids) & {
                      j["id"] for j in r.json()["data"]["items"]}))
        self.call("usage report", "GET", "/api/usage?group_by=model", (200,),
                  verify=self._verify_usage)
        self.call("metrics", "GET", "/metrics", (200,),
                  verify=lambda r, c: _expect("http_requests_total" in r.text))
        self.call("refresh token", "POST", "/api/auth/refresh", (200,),
                  headers={"Authorization": f"Bearer {self.refresh_token}"},
                  verify=lambda r, c: _expect(r.json()["data"]["access_token"]))
        self.call("logout", "POST", "/api/auth/logout", (200,))
        self.call("revoked token refused", "GET", "/api/auth/me", (401,))
        return self.checks

    def _login(self) -> bool:
        response = self.call("login", "POST", "/api/auth/login", (200,), json={
            "username": self.username, "password": self.password})
        if not response or response.status_code != 200:
            return False
        data = response.json()["data"]
        self.token, self.refresh_token = data["access_token"], data["refresh_token"]
        return True

    def _chat_body(self, text: str) -> dict:
        return {"model": self.chat_model, "max_tokens": 64,
                "messages": [{"role": "user", "content": text}]}

    def _chat_sync(self) -> None:
        def verify(response, check):
            data = response.json()["data"]
            _expect(data["choices"][0]["message"]["content"])
            self.job_ids.append(data["job_id"])
            check.tokens = data["usage"]["total_tokens"]
            self._job_cost(check, self.wait_for_job(data["job_id"]))
        self.call("chat (sync)", "POST", "/api/bailian/chat/completions", (200,),
                  json=self._chat_body("Reply with one word: ping"), verify=verify,
                  headers={"Authorization": f"Bearer {self.token}",
                           "Idempotency-Key": f"smoke-{uuid.uuid4()}"})

    def _chat_async(self) -> None:
        def verify(response, check):
            job_id = response.json()["data"]["id"]
            self.job_ids.append(job_id)
            job = self.wait_for_job(job_id)
            _expect(job["status"] == "succeeded", f"job {job['status']}: {job.get('error')}")
            self._job_cost(check, job)
        self.call("chat (async job)", "POST", "/api/bailian/chat/completions", (202,),
                  json=self._chat_body("Reply with one word: pong"), verify=verify,
                  headers={"Authorization": f"Bearer {self.token}",
                           "Prefer": "respond-async"})

    def _chat_stream(self) -> None:
        def verify(response, check):
            job_id = response.headers["X-Job-ID"]
            data = [line[6:] for line in response.iter_lines(decode_unicode=True)
                    if line.startswith("data: ")]
            _expect(data and data[-1] == "[DONE]", "the stream did not end with [DONE]")
            chunks = [json.loads(item) for item in data[:-1]]
            _expect(not any("error" in chunk for chunk in chunks), f"error event: {data[-2]}")
            _expect("".join(choice["delta"].get("content") or "" for chunk in chunks
                            for choice in chunk.get("choices") or []), "no content streamed")
            self.job_ids.append(job_id)
            job = self.wait_for_job(job_id)
            _expect(job["status"] == "succeeded", f"job {job['status']}: {job.get('error')}")
            self._job_cost(check, job)
        self.call("chat (stream)", "POST", "/api/bailian/chat/completions", (200,),
                  json={**self._chat_body("Reply with one word: stream"), "stream": True},
                  verify=verify, stream=True)

    def _generation(self) -> None:
        image_urls: list[str] = []

        def verify(response, check):
            data = response.json()["data"]
            job_id = data.get("job_id") or data.get("id")
            self.job_ids.append(job_id)
            job = self.wait_for_job(job_id)
            _expect(job["status"] == "succeeded", f"job {job['status']}: {job.get('error')}")
            self._job_cost(check, job)
            image_urls.extend(r["url"] for r in job["result"]["output"]["results"]
                              if r.get("url"))
            _expect(image_urls)
        self.call("generation", "POST", "/api/bailian/generation", (200, 202), verify=verify,
                  json={"model": self.image_model, "prompt": "a small red lighthouse",
                        "parameters": {"n": 1}})
        if image_urls:
            self.call("generated image", "GET", image_urls[0], (200,),
                      verify=lambda r, c: _expect(
                          r.headers.get("Content-Type", "").startswith("image/")))

    def _verify_usage(self, response, check) -> None:
        totals = response.json()["data"]["totals"]
        _expect(totals["requests"] >= 1)
        check.tokens, check.cost = totals["total_tokens"], totals["cost"]


def _expect(condition, message: str = "check failed") -> None:
    if not condition:
        raise AssertionError(message)


def table(checks: list[Check]) -> str:
    rows = [("check", "endpoint", "status", "latency", "tokens", "cost", "result")]
    for c in checks:
        rows.append((c.name, c.endpoint, str(c.status or "-"),
                     f"{c.latency_ms:.0f} ms" if c.latency_ms is not None else "-",
                     str(c.tokens) if c.tokens is not None else "-",
                     f"{c.cost:.6f}" if c.cost is not None else "-",
                     "ok" if c.ok else f"FAIL {c.note}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                     + "  " + row[-1] for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("BAILIAN_BASE_URL",
                                                             "http://127.0.0.1:8000"))
    parser.add_argument("--username", default=os.environ.get("BAILIAN_USERNAME", "admin"))
    parser.add_argument("--password", default=os.environ.get("BAILIAN_PASSWORD"))
    parser.add_argument("--chat-model", default="qwen-turbo")
    parser.add_argument("--image-model", default="wanx-v1")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per job")
    parser.add_argument("--min-success", type=float, default=80.0, help="percent")
    args = parser.parse_args(argv)
    if not args.password:
        parser.error("--password (or BAILIAN_PASSWORD) is required")
    smoke = Smoke(args.base_url, args.username, args.password, chat_model=args.chat_model,
                  image_model=args.image_model, timeout=args.timeout)
    checks = smoke.run()
    passed = sum(c.ok for c in checks)
    rate = 100.0 * passed / len(checks)
    print(table(checks))  # noqa: T201
    print(f"\n{passed}/{len(checks)} checks passed: {rate:.1f}% success "  # noqa: T201
          f"(minimum {args.min_success:g}%)")
    return 0 if rate >= args.min_success else 1


if __name__ == "__main__":
    sys.exit(main())
