"""/metrics for the web tier: prometheus-flask-exporter's endpoint, multiprocess-aware.

Under gunicorn, every worker writes its samples to PROMETHEUS_MULTIPROC_DIR (set, wiped and
cleaned of dead workers by gunicorn.conf.py) and any worker answers /metrics with the sum
(common/infra/prometheus.py builds the registry a scrape reads).
The request metrics are recorded by hooks with the route template as label (never the raw
path), and readiness is computed at scrape time, not remembered per process.
"""

from __future__ import annotations

import time

from flask import Flask, g, request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_flask_exporter import PrometheusMetrics

from common.infra.health import CONNECTED, dependency_checks, run_checks
from common.infra.metrics import HTTP_DURATION, HTTP_REQUESTS, configure_labels
from common.infra.prometheus import scrape_registry
from common.infra.settings import Settings
from web.openapi import Doc, Raw

UNMATCHED = "unmatched"  # 404s have no route; their paths must not become labels


def init_app(app: Flask, settings: Settings) -> None:
    configure_labels([*settings.chat_models, *settings.task_models,
                      *settings.embedding_models])
    if not settings.metrics_enabled:
        return
    app.before_request(_start_timer)
    app.after_request(_observe)
    PlatformMetrics(app, collectors=[ReadinessCollector(settings)])
    app.view_functions["prometheus_metrics"].__openapi__ = Doc(
        summary="Prometheus metrics (block it at the ingress)", auth=False, tag="meta",
        responses={200: Raw("text/plain", description="Prometheus text exposition format")})


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _observe(response):
    if request.path == "/metrics":
        return response
    endpoint = request.url_rule.rule if request.url_rule else UNMATCHED
    HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
    started = g.get("request_started")
    if started is not None:
        HTTP_DURATION.labels(request.method, endpoint).observe(time.perf_counter() - started)
    return response


class PlatformMetrics(PrometheusMetrics):
    """The exporter's /metrics with our metrics (no defaults: ours carry the documented names)
    plus collectors that compute a value at scrape time."""

    def __init__(self, app: Flask, collectors: list) -> None:
        self.collectors = collectors
        super().__init__(app, export_defaults=False)

    def generate_metrics(self, accept_header=None, names=None):
        encoder, content_type = choose_encoder(accept_header)
        return encoder(scrape_registry(self.collectors)).decode(), content_type


class ReadinessCollector:
    """health_check_status{component}: 1 when the dependency answers, checked at scrape."""

    def __init__(self, settings: Settings) -> None:
        self.checks = dependency_checks(settings)
        self.timeout = settings.health_check_timeout
        self.dashscope = settings.dashscope_configured or bool(settings.fc_qwen_endpoint)

    def collect(self):
        family = GaugeMetricFamily("health_check_status",
                                   "1 if the dependency is reachable (or configured)",
                                   labels=["component"])
        for component, result in run_checks(self.checks, self.timeout).items():
            family.add_metric([component], 1.0 if result == CONNECTED else 0.0)
        family.add_metric(["dashscope_api"], 1.0 if self.dashscope else 0.0)
        yield family
