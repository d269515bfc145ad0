"""The emulator's request handling shared by every route: auth, directives, faults, errors."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import uuid

from aiohttp import web

from emulator import directives as knobs
from emulator import images, uploads
from emulator.errors import EmulatorError
from emulator.state import Config, RateLimiter, Stats

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream;charset=UTF-8"
FAULTS = {
    "400": (400, "InvalidParameter", "Required parameter(s) missing or invalid, please check the "
            "request parameters."),
    "401": (401, "InvalidApiKey", "Invalid API-key provided."),
    "403": (403, "AccessDenied", "Access denied."),
    "inspection": (400, "DataInspectionFailed", "Input data may contain inappropriate content."),
    "429": (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    "500": (500, "InternalError", "An internal error has occured, please try again later or "
            "contact service support."),
    "503": (503, "ModelUnavailable", "Model is unavailable, please try again later."),
}


def new_request_id() -> str:
    return str(uuid.uuid4())


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status,
                        content_type=JSON_TYPE, headers=headers)


def error_response(error: EmulatorError) -> web.Response:
    return json_response({"code": error.code, "message": error.message,
                          "request_id": new_request_id()}, error.status, error.headers)


def openai_error_body(error: EmulatorError) -> dict:
    """Compatible mode's error object (dashscope-protocol.md §4, part 2 §1.5)."""
    codes = {"InvalidApiKey": "invalid_api_key", "DataInspectionFailed": "data_inspection_failed",
             "InvalidParameter": "invalid_parameter_error"}
    code = codes.get(error.code, error.code)
    return {"error": {"message": error.message, "type": "invalid_request_error"
                      if error.status < 500 else "server_error", "param": None, "code": code},
            "request_id": new_request_id()}


def openai_error_response(error: EmulatorError) -> web.Response:
    return json_response(openai_error_body(error), error.status, error.headers)


class Emulator:
    def __init__(self, config: Config) -> None:
        self.defaults = config
        self.reset()

    def reset(self) -> None:
        self.config = Config(**self.defaults.__dict__)
        self.stats = Stats()
        self.limiter = RateLimiter()
        self.tasks = images.TaskBoard(self.config)
        self.uploads = uploads.UploadStore()
        self.rng = random.Random(self.config.seed)

    # --- shared request handling ---------------------------------------------------------

    def authorize(self, request: web.Request) -> None:
        if request.headers.get("Authorization", "") != f"Bearer {self.config.api_key}":
            raise EmulatorError(401, "InvalidApiKey", "Invalid API-key provided.")

    async def read_json(self, request: web.Request) -> dict:
        try:
            body = await request.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise EmulatorError(400, "InvalidParameter", "Request body must be a JSON object.")
        return body

    def directives_of(self, request: web.Request, texts: list[str]) -> dict[str, str]:
        found = knobs.parse_header(request.headers.get(knobs.HEADER))
        for piece in texts:
            found.update(knobs.parse(piece))
        return found

    def chosen_fault(self, found: dict[str, str]) -> str | None:
        """The fault this request suffers: a directive (within its `times`) or a random one."""
        fault = found.get("fault")
        if fault:
            signature = knobs.signature(found)
            self.stats.directive_hits[signature] += 1
            times = int(found.get("times", 0) or 0)
            if not times or self.stats.directive_hits[signature] <= times:
                return fault.lower()
            return None
        roll = self.rng.random()
        for name, share in self.config.fault_rates.items():
            if roll < share:
                return name
            roll -= share
        return None

    async def delay(self, found: dict[str, str]) -> None:
        seconds = self.config.delay_seconds(self.rng) + float(found.get("latency_ms", 0)) / 1000
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def pace(self, found: dict[str, str]) -> None:
        """The pause between two stream events (`chunk_ms=`, or the server's interval)."""
        seconds = float(found.get("chunk_ms", self.config.chunk_interval_ms)) / 1000
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def send_stream(self, request: web.Request, events: list[bytes],
                          found: dict[str, str], ends_in_error: bool) -> web.StreamResponse:
        """Write the events, paced, and count how the stream ended (for tests' assertions)."""
        from emulator.streams import Stamper

        response = web.StreamResponse(headers={"Content-Type": SSE_TYPE})
        await response.prepare(request)
        stamper = Stamper()
        try:
            for number, event in enumerate(events):
                if number:
                    await self.pace(found)
                await response.write(stamper.stamp_event(event))
            await response.write_eof()
        except ConnectionResetError:
            # The client went away mid-stream; DashScope just stops generating for it.
            self.stats.streams["disconnected"] += 1
            return response
        self.stats.streams["failed" if ends_in_error else "completed"] += 1
        return response

    async def apply_fault(self, request: web.Request, fault: str | None,
                          found: dict[str, str]) -> None:
        """Raise the error, hang, or drop the connection, as the fault says."""
        if fault is None:
            return
        if fault == "reset":
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                # SO_LINGER 0: close with RST, which the client sees as "connection reset".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "hang":
            await asyncio.sleep(self.config.hang_seconds)
            raise EmulatorError(504, "RequestTimeOut", "Request timed out.")
        if fault in FAULTS:
            status, code, message = FAULTS[fault]
            headers = {}
            retry_after = found.get("retry_after")
            if status == 429 and retry_after is None and self.config.rate_limit_retry_after:
                retry_after = str(self.config.rate_limit_retry_after)
            if status == 429 and retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            raise EmulatorError(status, code, message, headers)

    def throttle(self, key: str, per_second: float) -> None:
        if not self.limiter.allow(key, per_second):
            headers = {}
            if self.config.rate_limit_retry_after:
                headers["Retry-After"] = str(self.config.rate_limit_retry_after)
            raise EmulatorError(429, "Throttling.RateQuota",
                                "Requests rate limit exceeded, please try again later.", headers)

    def base_url(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"


def message_texts(body: dict) -> list[str]:
    body_input = body.get("input") or {}
    texts = [body_input.get("prompt") or ""] if isinstance(body_input, dict) else []
    for source in (body_input.get("messages") if isinstance(body_input, dict) else None,
                   body.get("messages")):
        if isinstance(source, list):
            texts += [m.get("content") for m in source
                      if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return texts
