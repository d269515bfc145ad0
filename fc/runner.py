"""Serve the functions over HTTP locally, the way Function Compute's HTTP trigger would:

    python -m fc.runner --port 9000     # POST /qwen, POST /wanx

For tests and demos it can misbehave on request: `[[fc: fault=timeout|error|mismatch;
times=N]]` anywhere in the request makes the invocation hang past the caller's timeout, crash
(HTTP 502, as FC answers an unhandled error), or echo a wrong correlation id. It counts the
invocations it received at GET /_runner/stats.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fc.handlers import qwen_handler, wanx_handler

FUNCTIONS = {"/qwen": qwen_handler, "/wanx": wanx_handler}
_FAULT = re.compile(r"\[\[fc:([^\]]*)\]\]")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.invocations: collections.Counter[str] = collections.Counter()
        self.fault_hits: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[dict] = collections.deque(maxlen=5000)


STATS = Stats()


def chosen_fault(text: str) -> str | None:
    match = _FAULT.search(text)
    if not match:
        return None
    knobs = dict(part.strip().split("=", 1) for part in match.group(1).split(";") if "=" in part)
    with STATS.lock:
        STATS.fault_hits[match.group(0)] += 1
        hits = STATS.fault_hits[match.group(0)]
    times = int(knobs.get("times", 0) or 0)
    return knobs.get("fault") if not times or hits <= times else None


class Handler(BaseHTTPRequestHandler):
    hang_seconds = 30.0

    def do_GET(self):
        if self.path != "/_runner/stats":
            return self._send(404, {"error": "not found"})
        with STATS.lock:
            return self._send(200, {"invocations": dict(STATS.invocations),
                                    "log": list(STATS.log)})

    def do_POST(self):
        function = FUNCTIONS.get(self.path)
        if function is None:
            return self._send(404, {"error": "no such function"})
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
        fault = chosen_fault(body)
        with STATS.lock:
            STATS.invocations[self.path.strip("/")] += 1
            STATS.log.append({"function": self.path.strip("/"), "fault": fault,
                              "correlation_id": self.headers.get("X-Correlation-ID")})
        if fault == "timeout":
            time.sleep(self.hang_seconds)
        if fault == "error":  # what FC answers when a handler raises
            return self._send(502, {"errorMessage": "handler raised", "errorType":
                                    "UnhandledInvocationError"},
                              {"x-fc-error-type": "UnhandledInvocationError"})
        event = {"version": "v1", "rawPath": self.path, "body": body, "isBase64Encoded": False,
                 "headers": dict(self.headers.items()),
                 "requestContext": {"http": {"method": "POST", "path": self.path}}}
        envelope = function(json.dumps(event).encode())
        if fault == "mismatch":
            envelope["headers"]["X-Correlation-ID"] = "someone-elses-request"
        self._send(envelope["statusCode"], envelope, envelope["headers"])

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            if name.lower() not in ("content-length", "content-type"):
                self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):  # requests are counted, not printed
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    Handler.hang_seconds = args.hang_seconds
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"function runner listening on http://{args.host}:{args.port}", flush=True)  # noqa: T201
    server.serve_forever()


if __name__ == "__main__":
    main()
