"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common.accounts.api_keys import ApiKeys, hash_key
from common.accounts.session_state import AuthState
from common.accounts.signing_key import jwt_secret
from common.billing.token_limits import TokenLimits
from common.infra.db import database_from_settings
from common.infra.log import configure_logging
from common.infra.redis_client import redis_from_settings
from common.infra.settings import Settings, get_settings
from common.infra.storage import image_store
from common.jobs.embedding import EmbeddingCalls
from common.jobs.lifecycle import JobLifecycle
from common.jobs.queue import make_celery
from common.jobs.shapes import JobShapes
from common.jobs.streams import job_streams
from common.jobs.uploads import Uploads
from common.upstream.backends import backends
from web import (
    access_log,
    authentication,
    cli,
    console,
    error_handlers,
    http_metrics,
    openapi,
    rate_limits,
    request_id,
    validation,
)
from web.api import register_blueprints
from web.context import Services
from web.context import init_app as init_context
from web.stream_hub import StreamHub
from web.waiter import JobWaiter

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = Flask("bailian")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length, JSON_SORT_KEYS=False)
    app.json.sort_keys = False
    if settings.trusted_proxy_hops:
        # The client address (rate limits, logs) and scheme, through that many proxies. The
        # host is never taken from the request (links are built from PUBLIC_BASE_URL), so
        # X-Forwarded-Host stays untrusted.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)

    database = database_from_settings(settings)
    redis_client = redis_from_settings(settings)
    store = image_store(settings)
    celery = make_celery(settings)
    lifecycle = JobLifecycle.of(settings=settings, database=database,
                                redis_client=redis_client, celery=celery)
    init_context(app, Services(
        settings=settings,
        database=database,
        redis=redis_client,
        auth_state=AuthState(redis_client, database.sessionmaker),
        lifecycle=lifecycle,
        waiter=JobWaiter(redis_client),
        image_store=store,
        stream_hub=StreamHub(job_streams(settings, redis_client), redis_client),
        shapes=JobShapes(settings=settings, image_store=store, signing_key=jwt_secret(settings)),
        uploads=Uploads(database=database, store=store, settings=settings),
        api_keys=ApiKeys(hash_key=hash_key(settings, jwt_secret(settings)),
                         redis_client=redis_client, session_factory=database.sessionmaker),
        token_limits=TokenLimits(redis_client, settings.token_limit_window_seconds),
        # Embeddings call DashScope from the web process (common/jobs/embedding.py).
        embeddings=EmbeddingCalls(lifecycle=lifecycle, settings=settings,
                                  backend=backends(settings)["dashscope"]),
        celery=celery,
    ))
    request_id.init_app(app)
    http_metrics.init_app(app, settings)
    access_log.init_app(app)
    error_handlers.init_app(app)
    validation.init_app(app)
    authentication.init_app(app, settings)
    register_blueprints(app)
    console.init_app(app, settings)
    openapi.init_app(app)
    rate_limits.init_app(app, settings)
    cli.init_app(app)
    openapi.publish(app, settings)
    cli.bootstrap_admin_if_configured(settings, database)
    return app
