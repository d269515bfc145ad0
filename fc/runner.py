"""Serve the functions over HTTP locally, the way Function Compute's HTTP trigger would:

    python -m fc.runner --port 9000     # POST /qwen, POST /wanx

For tests and demos it can misbehave on request: `[[fc: fault=timeout|error|mismatch;
times=N]]` anywhere in the request makes the invocation hang past the caller's timeout, crash
(HTTP 502, as FC answers an unhandled error), or echo a wrong correlation id. `[[fc:
shape=openai|native|native-text|broken]]` makes a chat answer's `data` take the shape a
function written another way would return (see fc/README.md, "Accepted data shapes"), with
its usage inside `data` instead of `token_usage`. It counts the invocations it received, and
logs the token usage each produced, at GET /_runner/stats.
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


def _knobs(text: str) -> dict[str, str]:
    match = _FAULT.search(text)
    if not match:
        return {}
    return dict(part.strip().split("=", 1) for part in match.group(1).split(";") if "=" in part)


def chosen_fault(text: str) -> str | None:
    match = _FAULT.search(text)
    if not match:
        return None
    knobs = _knobs(text)
    with STATS.lock:
        STATS.fault_hits[match.group(0)] += 1
        hits = STATS.fault_hits[match.group(0)]
    times = int(knobs.get("times", 0) or 0)
    return knobs.get("fault") if not times or hits <= times else None


def reshaped(body: dict, shape: str) -> dict:
    """A successful chat answer as a function returning another shape would send it: usage
    inside `data` in that shape's own names, no `token_usage`."""
    data, usage = body["data"], body["token_usage"]
    choice = {"message": data["message"], "finish_reason": data["finish_reason"]}
    if shape == "openai":  # an OpenAI chat.completion object
        data = {"id": data["request_id"], "object": "chat.completion",
                "created": int(time.time()), "choices": [{"index": 0, **choice}],
                "usage": {"prompt_tokens": usage["input_tokens"],
                          "completion_tokens": usage["output_tokens"],
                          "total_tokens": usage["total_tokens"]}}
    elif shape == "native":  # DashScope's own answer, result_format=message
        data = {"request_id": data["request_id"], "output": {"choices": [choice]},
                "usage": usage}
    elif shape == "native-text":  # DashScope's own answer, result_format=text
        data = {"request_id": data["request_id"], "usage": usage, "output": {
            "text": data["message"]["content"], "finish_reason": data["finish_reason"]}}
    elif shape == "broken":
        data = {"choices": []}
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return {"success": True, "data": data}


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
        fault, shape = chosen_fault(body), _knobs(body).get("shape")
        entry = {"function": self.path.strip("/"), "fault": fault, "shape": shape,
                 "correlation_id": self.headers.get("X-Correlation-ID")}
        with STATS.lock:
            STATS.invocations[self.path.strip("/")] += 1
            STATS.log.append(entry)
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
        with STATS.lock:
            entry["token_usage"] = envelope["body"].get("token_usage")
        if shape and envelope["body"].get("success"):
            envelope["body"] = reshaped(envelope["body"], shape)
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
