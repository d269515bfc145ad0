"""A user's past, written straight into the database for the console's tests and benchmark:
finished jobs (with their usage rows) spread over days, kinds, statuses and models."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal

from common.billing.models import UsageRecord
from common.infra.db import Database
from common.infra.orm import utcnow
from common.jobs.models import Job, JobKind, JobStatus

CHAT_MODELS = ("qwen-turbo", "qwen-plus", "qwen-max", "qwq-plus")
STATUSES = (JobStatus.SUCCEEDED,) * 7 + (JobStatus.FAILED, JobStatus.CANCELED)


def seed_history(database: Database, *, user_id: int, jobs: int, days: int = 30,
                 models: tuple[str, ...] = (*CHAT_MODELS, "wanx-v1")) -> list[dict]:
    """`jobs` finished jobs of `user_id` over the last `days` UTC days (today included), the
    i-th with models[i % len(models)] on day (i // len(models)) % days, so every day sees
    every model once there are len(models) x days jobs, and STATUSES[i % len(STATUSES)];
    succeeded chats have a usage row of (i % 50 + 10) tokens costing 0.0001 per token, and
    images one costing 0.02. Returns the usage rows."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    job_rows, usage_rows = [], []
    for i in range(jobs):
        model = models[i % len(models)]
        kind = JobKind.IMAGE if model.startswith("wan") else JobKind.CHAT
        status = STATUSES[i % len(STATUSES)]
        # Spread over the days, inside each day by minutes: never in the future.
        created = today - dt.timedelta(days=(i // len(models)) % days) \
            + dt.timedelta(minutes=i % 600)
        created = min(created, utcnow() - dt.timedelta(seconds=i + 1))
        job_id = str(uuid.uuid4())
        tokens = 0 if kind == JobKind.IMAGE else i % 50 + 10
        job_rows.append({
            "id": job_id, "user_id": user_id, "kind": kind, "model": model, "status": status,
            "request": {"messages": [{"role": "user", "content": f"seeded question {i}"}]}
            if kind == JobKind.CHAT else {"prompt": f"seeded picture {i}", "parameters": {}},
            "result": {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 0,
                       "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": f"seeded answer {i}"}}],
                       "usage": {"prompt_tokens": tokens // 2,
                                 "completion_tokens": tokens - tokens // 2,
                                 "total_tokens": tokens}}
            if kind == JobKind.CHAT and status == JobStatus.SUCCEEDED else None,
            "error_code": "InternalError" if status == JobStatus.FAILED else None,
            "error_message": "seeded failure" if status == JobStatus.FAILED else None,
            "request_fingerprint": hashlib.sha256(job_id.encode()).hexdigest(),
            "path": "dashscope", "compute_cost": Decimal(0), "polls": 0, "attempts": 1,
            "created_at": created, "enqueued_at": created, "started_at": created,
            "finished_at": created + dt.timedelta(seconds=1),
            "deadline_at": created + dt.timedelta(hours=1), "updated_at": created})
        if status == JobStatus.SUCCEEDED:
            usage_rows.append({
                "job_id": job_id, "user_id": user_id, "kind": kind, "model": model,
                "input_tokens": tokens // 2, "output_tokens": tokens - tokens // 2,
                "total_tokens": tokens, "image_count": 1 if kind == JobKind.IMAGE else 0,
                "estimated": False,
                "cost": Decimal("0.02") if kind == JobKind.IMAGE else Decimal(tokens)
                * Decimal("0.0001"),
                "compute_cost": Decimal(0), "currency": "CNY", "path": "dashscope",
                "created_at": created + dt.timedelta(seconds=1)})
    with database.engine.begin() as conn:
        conn.execute(Job.__table__.insert(), job_rows)
        if usage_rows:
            conn.execute(UsageRecord.__table__.insert(), usage_rows)
    return usage_rows
