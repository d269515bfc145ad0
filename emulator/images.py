"""Wanx text-to-image tasks: validation, a time-driven state machine, and the task bodies."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import struct
import time
import uuid
import zlib

from emulator.errors import EmulatorError
from emulator.state import Config

V1_MODELS = {"wanx-v1"}
V2_MODELS = {"wanx2.1-t2i-turbo", "wanx2.1-t2i-plus", "wanx2.0-t2i-turbo",
             "wan2.2-t2i-flash", "wan2.2-t2i-plus", "wan2.5-t2i-preview"}
# wan2.5 bounds total pixels and aspect ratio instead of each side (protocol-2 section 5.2).
PIXEL_RULE_MODELS = {"wan2.5-t2i-preview"}
V1_SIZES = {"1024*1024", "720*1280", "768*1152", "1280*720"}
V1_STYLES = {"<auto>", "<photography>", "<portrait>", "<3d cartoon>", "<anime>",
             "<oil painting>", "<watercolor>", "<sketch>", "<chinese painting>",
             "<flat illustration>"}
OUTCOMES = {"succeeded", "partial", "failed", "unknown", "canceled"}
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"}


@dataclasses.dataclass
class ImageTask:
    task_id: str
    model: str
    prompt: str
    n: int
    submitted: float
    pending_s: float
    duration_s: float
    outcome: str
    kind: str = "image"  # or "video"
    seconds: int = 0  # a video's duration
    video_kb: int = 1  # a video's size (the video_kb directive)
    inputs: list[str] = dataclasses.field(default_factory=list)  # input image URLs
    status: str = "PENDING"
    started: float | None = None
    ended: float | None = None
    queries: list[float] = dataclasses.field(default_factory=list)  # GET /tasks/{id} times

    def summary(self) -> dict:
        return {"task_id": self.task_id, "model": self.model, "status": self.status,
                "kind": self.kind, "inputs": self.inputs,
                "submitted": self.submitted, "started": self.started, "ended": self.ended,
                "queries": self.queries}


def validate_submission(body: dict) -> tuple[str, str, int]:
    """(model, prompt, n) of a valid submission, or the 400 DashScope would answer."""
    model = body.get("model")
    if not model:
        raise EmulatorError(400, "BadRequest.EmptyModel", 'Required parameter "model" missing.')
    if model not in V1_MODELS | V2_MODELS:
        raise EmulatorError(404, "ModelNotFound", "Model can not be found.")
    body_input = body.get("input") or {}
    params = body.get("parameters") or {}
    prompt = body_input.get("prompt")
    v1 = model in V1_MODELS
    if not isinstance(prompt, str) or not prompt:
        raise EmulatorError(400, "InvalidParameter", "Field required: input.prompt")
    if len(prompt) > (500 if v1 else 2000 if model in PIXEL_RULE_MODELS else 800):
        raise EmulatorError(400, "InvalidParameter", "input.prompt is too long")
    negative = body_input.get("negative_prompt")
    if negative is not None and (not isinstance(negative, str) or len(negative) > 500):
        raise EmulatorError(400, "InvalidParameter", "input.negative_prompt is too long")
    n = params.get("n", 4)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 4:
        raise EmulatorError(400, "InvalidParameter", "n should be in [1, 4]")
    _check_size(params.get("size", "1024*1024"), v1, model in PIXEL_RULE_MODELS)
    if v1 and params.get("style", "<auto>") not in V1_STYLES:
        raise EmulatorError(400, "InvalidParameter", "style is not supported")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed <= 2**31 - 1):
        raise EmulatorError(400, "InvalidParameter", "seed should be in [0, 2147483647]")
    return model, prompt, n


def _check_size(size, v1: bool, by_pixels: bool = False) -> None:
    if v1:
        if size not in V1_SIZES:
            raise EmulatorError(400, "InvalidParameter", "The size is not match the allowed "
                                f"size {sorted(V1_SIZES)}")
        return
    try:
        width, height = (int(part) for part in str(size).split("*"))
    except ValueError:
        raise EmulatorError(400, "InvalidParameter", "size must be W*H") from None
    if by_pixels:
        if not 768 * 768 <= width * height <= 1440 * 1440 or \
                max(width, height) > 4 * min(width, height):
            raise EmulatorError(400, "InvalidParameter", "size out of range")
        return
    if not (512 <= width <= 1440 and 512 <= height <= 1440):
        raise EmulatorError(400, "InvalidParameter", "size out of range")


class TaskBoard:
    """All tasks, advanced lazily: PENDING until a slot frees, RUNNING for the duration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tasks: dict[str, ImageTask] = {}
        self._pending: list[ImageTask] = []  # in submission order
        self._running: list[ImageTask] = []

    def submit(self, model: str, prompt: str, n: int, directives: dict[str, str], *,
               kind: str = "image", seconds: int = 0, inputs: list[str] | None = None
               ) -> ImageTask:
        outcome = directives.get("outcome", "succeeded").lower()
        task = ImageTask(
            task_id=str(uuid.uuid4()), model=model, prompt=prompt, n=n, submitted=time.time(),
            pending_s=float(directives.get("pending_s", self.config.image_pending_s)),
            duration_s=float(directives.get("duration_s", self.config.image_duration_s)),
            outcome=outcome if outcome in OUTCOMES else "succeeded", kind=kind,
            seconds=seconds, video_kb=int(directives.get("video_kb", 1)),
            inputs=list(inputs or []))
        self.tasks[task.task_id] = task
        self._pending.append(task)
        return task

    def advance(self) -> None:
        now = time.time()
        still_running = []
        for task in self._running:
            if task.status != "RUNNING":
                continue
            if now >= task.started + task.duration_s:
                self._finish(task, task.started + task.duration_s)
            else:
                still_running.append(task)
        self._running = still_running
        running = collections.Counter(task.model for task in still_running)
        limit = self.config.image_concurrency
        waiting = []
        for task in self._pending:
            if task.status != "PENDING":
                continue
            if now < task.submitted + task.pending_s or (limit and running[task.model] >= limit):
                waiting.append(task)
                continue
            task.status, task.started = "RUNNING", now
            running[task.model] += 1
            if now >= task.started + task.duration_s:
                self._finish(task, now)
            else:
                self._running.append(task)
        self._pending = waiting

    def _finish(self, task: ImageTask, at: float) -> None:
        task.ended = at
        task.status = {"failed": "FAILED", "canceled": "CANCELED",
                       "unknown": "UNKNOWN"}.get(task.outcome, "SUCCEEDED")

    def get(self, task_id: str) -> ImageTask | None:
        self.advance()
        task = self.tasks.get(task_id)
        if task is None or time.time() - task.submitted > self.config.task_ttl_s:
            return None
        return task

    def cancel(self, task_id: str) -> ImageTask:
        task = self.get(task_id)
        if task is None or task.status != "PENDING":
            raise EmulatorError(400, "UnsupportedOperation", "Failed to cancel the task, please "
                                "confirm if the task is in PENDING status.")
        task.status, task.ended = "CANCELED", time.time()
        return task


def _clock(ts: float | None) -> str | None:
    if ts is None:
        return None
    # DashScope writes local China time without a zone.
    local = dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(hours=8)))
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def task_output(task: ImageTask, base_url: str) -> tuple[dict, dict | None]:
    """(output, usage) exactly as GET /api/v1/tasks/{id} returns them."""
    output: dict = {"task_id": task.task_id, "task_status": task.status,
                    "submit_time": _clock(task.submitted)}
    if task.started is not None:
        output["scheduled_time"] = _clock(task.started)
    if task.status in TERMINAL:
        output["end_time"] = _clock(task.ended)
    succeeded = task.n if task.outcome == "succeeded" else max(1, task.n // 2)
    usage = None
    if task.kind == "video":
        return _video_output(task, output, base_url)
    if task.status == "SUCCEEDED":
        results = []
        for index in range(task.n):
            if index < succeeded:
                results.append({"url": f"{base_url}/_emulator/images/{task.task_id}/{index}.png"})
            else:
                results.append({"code": "InternalError.Timeout", "message": "An internal timeout"
                                " error has occured during execution, please try again later "
                                "or contact service support."})
        output["results"] = results
        usage = {"image_count": succeeded}
    if task.status == "FAILED":
        output["code"] = "DataInspectionFailed" if "inspection" in task.prompt else "InternalError"
        output["message"] = ("Output data may contain inappropriate content."
                             if output["code"] == "DataInspectionFailed"
                             else "An internal error has occured, please try again later.")
    if task.status in ("RUNNING", "SUCCEEDED", "FAILED"):
        failed = task.n - succeeded if task.status == "SUCCEEDED" else 0
        done = succeeded if task.status == "SUCCEEDED" else 0
        output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": done, "FAILED": failed}
    return output, usage


def _video_output(task: ImageTask, output: dict, base_url: str) -> tuple[dict, dict | None]:
    """A video task's body (section 7.4): `video_url` ("" until it succeeds), a cover frame,
    and usage in the union of the shapes DashScope has used (video_duration and duration)."""
    output["video_url"] = ""
    if task.status == "FAILED":
        output["code"], output["message"] = "InternalError", \
            "An internal error has occured, please try again later."
    if task.status != "SUCCEEDED":
        return output, None
    output["video_url"] = f"{base_url}/_emulator/videos/{task.task_id}.mp4"
    output["cover_image_url"] = f"{base_url}/_emulator/images/{task.task_id}/0.png"
    output["orig_prompt"] = output["actual_prompt"] = task.prompt
    return output, {"video_duration": task.seconds, "duration": task.seconds,
                    "video_ratio": "1280*720", "SR": 720, "video_count": 1}


def render_png(seed: str, size: int = 64) -> bytes:
    """A small, valid, deterministic PNG whose colour depends on `seed`."""
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))
