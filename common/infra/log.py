"""JSON logs, one object per line, stamped with the request, job and user they belong to.

The context lives in contextvars, so a web request and a Celery task each carry their own ids
through every logger call without passing them around.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_CONTEXT_FIELDS = ("request_id", "job_id", "user_id")
_context: dict[str, contextvars.ContextVar] = {
    name: contextvars.ContextVar(name, default=None) for name in _CONTEXT_FIELDS
}


def bind_log_context(**values) -> None:
    """Set request_id / job_id / user_id for every following log line of this context."""
    for name, value in values.items():
        _context[name].set(value)


def log_context() -> dict:
    return {name: var.get() for name, var in _context.items()}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


def configure_logging(level: str = "INFO") -> None:
    """Route every logger to one JSON handler on stderr (idempotent)."""
    root = logging.getLogger()
    if any(getattr(h, "_bailian", False) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._bailian = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    ))
    handler.addFilter(ContextFilter())
    root.handlers = [h for h in root.handlers if not isinstance(h, logging.StreamHandler)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The SDK logs every failed request with a traceback; our backend logs the classified error.
    logging.getLogger("dashscope").setLevel(logging.CRITICAL)
    # Celery's per-task "received" / "succeeded" lines (two per poll of every image task);
    # failures are still logged, and the services log what each task did.
    if root.level > logging.DEBUG:
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
