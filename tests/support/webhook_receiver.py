"""A real HTTP server receiving webhooks in the tests, scriptable per path: which status to
answer each request with, and whether to hold a request until the test releases it."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = 0.0  # time.time() when it was answered

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, list[int]] = {}
        self.holds: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path
                with receiver._lock:
                    script = receiver.scripts.get(path) or []
                    status = script.pop(0) if script else 200
                    record = Received(path, {k.lower(): v for k, v in self.headers.items()},
                                      body, status)
                    receiver.received.append(record)
                    hold = receiver.holds.pop(path, None)
                if hold is not None:
                    hold.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                record.at = time.time()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"

    def script(self, path: str, statuses: list[int]) -> None:
        self.scripts[path] = list(statuses)

    def hold(self, path: str) -> threading.Event:
        """Hold the next request to `path` until the returned event is set."""
        self.holds[path] = event = threading.Event()
        return event

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(got := self.at(path)) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path} got {len(self.at(path))} of {count} deliveries")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
