"""Flower's settings, read from the working directory by `celery -A worker.celery_app flower`.

Basic auth comes from the platform's settings (FLOWER_BASIC_AUTH); outside development Flower
refuses to start without it, since it shows every task's arguments. Flower's /metrics and
/healthcheck stay open for Prometheus and probes (Flower exempts them), so keep Flower on an
internal network.
"""

from common.infra.settings import get_settings

_settings = get_settings()
port = 5555
# FLOWER_ADDRESS: loopback by default; compose and Kubernetes set 0.0.0.0 inside the container
# (publish it on an internal network only).
address = _settings.flower_address
url_prefix = ""
if _settings.flower_basic_auth is not None:
    basic_auth = [pair.strip() for pair in
                  _settings.flower_basic_auth.get_secret_value().split(",") if pair.strip()]
elif not _settings.is_development:
    raise SystemExit("FLOWER_BASIC_AUTH is required outside development (user:password)")
