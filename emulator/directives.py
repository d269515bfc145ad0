"""Per-request knobs: `[[emulator: key=value; ...]]` inside a prompt, or an X-Emulator header.

A prompt can carry them through the whole platform (the job stores the prompt, the worker
sends it), which is how end-to-end tests script one request's fate:

    fault=429|500|503|400|401|403|inspection|reset|hang|malformed|stream-error
    times=N          apply the fault to the first N requests carrying this directive only
    retry_after=S    with fault=429: send Retry-After: S
    at=N             with fault=stream-error: event N is the error (default 2; past the end,
                     the final chunk)
    error=NAME       with fault=stream-error: which error, a fault name above (default 500)
    status=S         with fault=stream-error: also write the `status:S` line the SDK reads
    latency_ms=N     answer after N ms
    chunk_ms=N       wait N ms between stream events (holds a stream open)
    stamp=1          each streamed content delta is `<t=UNIX_TIME>`, the wall-clock time the
                     emulator wrote it (native and compatible streams; usage still counts the
                     real answer), so a client on this machine can time every chunk's delay
    outcome=succeeded|partial|failed|unknown|canceled    (image, image-edit and video tasks)
    duration_s=S, pending_s=S                             (image, image-edit and video tasks)
    video_kb=N       a video task's MP4 is about N KiB (default 1; padded, deterministic)
    id=...           anything; makes an otherwise identical directive count separately
"""

from __future__ import annotations

import re

HEADER = "X-Emulator"
_PATTERN = re.compile(r"\[\[emulator:([^\]]*)\]\]", re.IGNORECASE)


def parse(text: str) -> dict[str, str]:
    directives: dict[str, str] = {}
    for block in _PATTERN.findall(text or ""):
        directives.update(_pairs(block))
    return directives


def parse_header(value: str | None) -> dict[str, str]:
    return _pairs(value or "")


def _pairs(block: str) -> dict[str, str]:
    pairs = {}
    for part in block.split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            pairs[key.strip().lower()] = value.strip()
    return pairs


def signature(directives: dict[str, str]) -> str:
    """A stable key for counting how often one directive has been seen (for `times`)."""
    return ";".join(f"{k}={v}" for k, v in sorted(directives.items()))


def strip(text: str) -> str:
    """The text without its directives, so replies and token counts ignore them."""
    return _PATTERN.sub("", text or "").strip()
