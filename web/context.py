"""The per-app services (database, Redis, the job lifecycle, shared auth state) and the
per-request session."""

from __future__ import annotations

import dataclasses

import redis
from celery import Celery
from flask import current_app, g
from sqlalchemy.orm import Session

from common.accounts.api_keys import ApiKeys
from common.accounts.session_state import AuthState
from common.billing.token_limits import TokenLimits
from common.infra.db import Database
from common.infra.settings import Settings
from common.infra.storage import ImageStore
from common.jobs.embedding import EmbeddingCalls
from common.jobs.lifecycle import JobLifecycle
from common.jobs.shapes import JobShapes
from common.jobs.uploads import Uploads
from web.stream_hub import StreamHub
from web.waiter import JobWaiter


@dataclasses.dataclass
class Services:
    settings: Settings
    database: Database
    redis: redis.Redis
    auth_state: AuthState
    lifecycle: JobLifecycle
    waiter: JobWaiter
    image_store: ImageStore
    stream_hub: StreamHub  # relays streamed jobs' events to this process's clients
    shapes: JobShapes  # the job as clients see it (common/jobs/shapes.py)
    uploads: Uploads | None = None  # POST /api/files
    api_keys: ApiKeys | None = None
    token_limits: TokenLimits | None = None
    embeddings: EmbeddingCalls | None = None  # run in the request (common/jobs/embedding.py)
    celery: Celery | None = None  # the operator's view inspects it (web/console)


def services() -> Services:
    return current_app.extensions["bailian"]


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = services().database.sessionmaker()
    return g.db_session


def init_app(app, svc: Services) -> None:
    app.extensions["bailian"] = svc

    @app.teardown_appcontext
    def _close_session(_exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()  # rolls back anything the view did not commit
