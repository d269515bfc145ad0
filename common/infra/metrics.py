"""Prometheus metrics shared by web and worker, in one place.

Labels are bounded: route templates (never raw paths), models from the configured allow-lists,
upstream error codes from DashScope's documented set (common/upstream/failures.py); never
user ids or job ids. Anything else is folded into "other", so a typo'd model or a new error
code cannot mint new series.
Buckets reach minutes: a chat call or a Wanx job lasts seconds to minutes.

Counters and histograms work unchanged in prometheus_client's multiprocess mode (gunicorn
workers, prefork children); values that are a state of the world (queue depth, tasks in
flight, readiness) are computed at scrape time by collectors (web/http_metrics.py,
worker/metrics_server.py) instead of gauges that each process would hold a stale copy of; both
expose them through common/infra/prometheus.py.
"""

from __future__ import annotations

import datetime as dt
import functools

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
OTHER = "other"

# Documented names
HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests by route template and status",
                        ["method", "endpoint", "status"])
HTTP_DURATION = Histogram("http_request_duration_seconds", "HTTP request latency",
                          ["method", "endpoint"], buckets=LATENCY_BUCKETS)
DATABASE_QUERIES = Counter("database_queries_total", "SQL statements sent to the database",
                           ["operation"])
AI_REQUESTS = Counter("ai_requests_total", "Billed AI calls (chat completions, image task "
                      "submissions) by outcome", ["model", "status"])
AI_TOKENS = Counter("ai_token_usage_total", "Tokens DashScope reported", ["model", "type"])

# What an operator of a job platform needs besides
AI_DURATION = Histogram("ai_request_duration_seconds", "Upstream call latency",
                        ["model", "operation"], buckets=LATENCY_BUCKETS)
AI_ERRORS = Counter("ai_request_errors_total", "Failed upstream calls by error code",
                    ["model", "operation", "code"])
AI_IMAGES = Counter("ai_images_generated_total", "Images DashScope generated (and billed)",
                    ["model"])
USAGE_COST = Counter("usage_cost_total", "Cost recorded in usage_records", ["model", "currency"])
JOBS_SUBMITTED = Counter("jobs_submitted_total", "Jobs created", ["kind"])
JOBS_FINISHED = Counter("jobs_finished_total", "Jobs that reached a terminal state",
                        ["kind", "status"])
JOB_DURATION = Histogram("job_duration_seconds", "Submission to terminal state",
                         ["kind", "status"], buckets=JOB_BUCKETS)
JOB_QUEUE_WAIT = Histogram("job_queue_wait_seconds", "Submission to first worker claim",
                           ["kind"], buckets=JOB_BUCKETS)
JOB_RETRIES = Counter("job_retries_total", "Upstream attempts retried", ["kind", "reason"])
WANX_TASK_QUERIES = Counter("wanx_task_queries_total", "GET /tasks/{id} sent to DashScope")
WANX_BUDGET_WAITS = Counter("wanx_task_query_budget_waits_total",
                            "Polls deferred because the task-query budget was spent")
RATE_LIMIT_REJECTIONS = Counter("rate_limit_rejections_total", "Requests refused with 429, by "
                                "limit (endpoint: chat, generation, login) and tier (the user's "
                                "role; anonymous for login)", ["endpoint", "tier"])
RATE_LIMIT_STORAGE_ERRORS = Counter("rate_limit_storage_errors_total", "Rate-limit checks "
                                    "without Redis, by the policy applied (closed: refused "
                                    "with 503; local: limited per process)", ["policy"])
FC_INVOCATIONS = Counter("fc_invocations_total", "Function Compute invocations",
                         ["function", "outcome"])
SWEEPER_ACTIONS = Counter("sweeper_actions_total", "What the sweeper had to repair",
                          ["action"])
WEBHOOK_DELIVERIES = Counter("webhook_deliveries_total", "Webhook delivery attempts by outcome "
                             "(delivered, failed: retried, gone: 410, refused: unsafe URL, "
                             "gave_up: failed after the retry window)", ["outcome"])
WEBHOOK_DELIVERY_LATENCY = Histogram(
    "webhook_delivery_latency_seconds", "A job's terminal transition to the receiver's 2xx for "
    "its completed event (retries included)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600))

_known_models: frozenset[str] = frozenset()


def configure_labels(models) -> None:
    """The models that may appear as label values (the configured allow-lists)."""
    global _known_models
    _known_models = frozenset(models)


def model_label(model: str | None) -> str:
    return model if model in _known_models else OTHER


@functools.lru_cache(maxsize=512)  # statements repeat: compiled once, counted every time
def sql_operation(statement: str) -> str:
    verb = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""
    return verb if verb in ("select", "insert", "update", "delete") else OTHER


def record_job_finished(kind: str, status: str, created_at: dt.datetime,
                        finished_at: dt.datetime) -> None:
    JOBS_FINISHED.labels(kind, status).inc()
    JOB_DURATION.labels(kind, status).observe(max(0.0, (finished_at - created_at).total_seconds()))
