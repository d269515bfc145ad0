"""schemathesis against the published OpenAPI document, in process: generated requests (valid
and invalid) never produce a 500, and every response matches the spec (status, content type,
body schema). The app runs on its own fresh database and broker queue."""

from __future__ import annotations

import os

import pytest
import redis
import schemathesis
from alembic import command
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.stack import (
    REDIS_HOST,
    REDIS_PORT,
    alembic_config,
    fresh_database,
    mysql_url,
    redis_db,
)

BROKER_DB = redis_db("conformance_broker")


def not_a_server_error_but_a_pending_job(ctx, response, case):
    """No worker runs here: a valid /v1 job request, which cannot answer 202 as /api does,
    ends in its documented 504 job_pending once V1_WAIT_SECONDS (0) passes. Any other 5xx
    fails."""
    if response.status_code == 504 and case.operation.path.startswith("/v1/") and \
            response.json()["error"]["code"] == "job_pending":
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [not_a_server_error_but_a_pending_job, status_code_conformance,
          content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def conformance_app(base_env, mysql_server, redis_server):
    from tests.conftest import settings_from_env
    from web.app import create_app

    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=BROKER_DB).flushdb()
    with fresh_database("bailian_conformance") as name:
        url = mysql_url(name)
        command.upgrade(alembic_config(url), "head")
        settings = settings_from_env({
            **base_env, "DATABASE_URL": url, "SYNC_WAIT_SECONDS": "0", "V1_WAIT_SECONDS": "0",
            "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}"})
        app = create_app(settings)
        yield app
    # Its users' cached session state shares the app's Redis database with the main test
    # database, whose users have the same ids: leave none of it behind.
    app_redis = redis.Redis.from_url(settings.redis_connection_url)
    for key in app_redis.scan_iter("auth:*"):
        app_redis.delete(key)


@pytest.fixture(scope="module")
def api_schema(conformance_app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", conformance_app)


@pytest.fixture(scope="module")
def fresh_token(conformance_app):
    """A new admin token per case: a generated logout must not starve the cases after it."""
    from common.accounts import users
    from common.accounts.models import Role, User
    from web.authentication import issue_tokens
    from web.context import services

    with conformance_app.app_context(), services().database.session() as session:
        admin = users.create_user(session=session, username="conformance_admin",
                                  password="conformance-password", role=Role.ADMIN)

    def mint() -> str:
        with conformance_app.test_request_context(), services().database.session() as session:
            # Reloaded: a generated revoke-sessions may have bumped its token generation.
            return issue_tokens(session, session.get(User, admin.id))["access_token"]
    return mint


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(max_examples=int(os.environ.get("CONFORMANCE_EXAMPLES", "40")), deadline=None,
                     derandomize=os.environ.get("CONFORMANCE_RANDOM") != "1",
                     suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_spec(case, fresh_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {fresh_token()}"}, checks=CHECKS)
