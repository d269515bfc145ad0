"""Seeding job history in bulk, server-side (MariaDB's SEQUENCE engine), for the jobs-API
scenario: a million rows take seconds this way, not the minutes an INSERT per row would."""

from __future__ import annotations

import dataclasses

import requests
from alembic import command
from sqlalchemy import func, select, text

from common.accounts import users
from common.accounts.models import Role
from common.infra.db import Database
from common.jobs.models import Job
from common.jobs.queries import encode_cursor
from tests.support.stack import (
    REDIS_HOST,
    REDIS_PORT,
    alembic_config,
    fresh_database,
    mysql_url,
)

OWNERS = 100  # the history belongs to this many users (seq_1_to_100 below)
YEAR_SECONDS = 365 * 24 * 3600


def seed_users(database: Database) -> None:
    """Users 2..OWNERS, beside the bench user (id 1); their password hash matches nothing."""
    with database.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, username, password_hash, role, is_active, created_at, "
            "updated_at) SELECT seq, CONCAT('history_', seq), '!', 'default', 1, NOW(), NOW() "
            "FROM seq_2_to_100"))


def seed_jobs(database: Database, *, rows: int, first_user_id: int, batch: int = 100_000
              ) -> None:
    """`rows` finished jobs spread over a year and over OWNERS users: mostly succeeded chats
    with a short request and result, some images, failures and cancellations."""
    for start in range(1, rows + 1, batch):
        end = min(rows, start + batch - 1)
        with database.engine.begin() as conn:
            # Only integers computed here are formatted into the statement.
            conn.execute(text(f"""
                INSERT INTO jobs (id, user_id, kind, model, status, request, result,
                    error_code, error_message, request_fingerprint, path, compute_cost, polls,
                    attempts, created_at, enqueued_at, started_at, finished_at, deadline_at,
                    updated_at)
                SELECT UUID(), :first + seq % {OWNERS},
                    IF(seq % 5 = 0, 'image', 'chat'),
                    IF(seq % 5 = 0, 'wanx-v1', 'qwen-turbo'),
                    ELT(1 + seq % 20, 'failed', 'canceled', 'succeeded', 'succeeded',
                        'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
                        'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
                        'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
                        'succeeded'),
                    JSON_OBJECT('messages', JSON_ARRAY(JSON_OBJECT(
                        'role', 'user', 'content', CONCAT('seeded question ', seq)))),
                    IF(seq % 20 > 1, JSON_OBJECT('id', CONCAT('chatcmpl-', seq),
                        'object', 'chat.completion', 'choices', JSON_ARRAY(JSON_OBJECT(
                            'index', 0, 'finish_reason', 'stop', 'message', JSON_OBJECT(
                                'role', 'assistant', 'content', 'a seeded answer')))), NULL),
                    IF(seq % 20 = 0, 'InternalError', NULL),
                    IF(seq % 20 = 0, 'seeded failure', NULL),
                    SHA2(seq, 256), 'dashscope', 0, 0, 1, t, t, t, t + INTERVAL 2 SECOND,
                    t + INTERVAL 1 HOUR, t + INTERVAL 2 SECOND
                FROM (SELECT seq, TIMESTAMP '2025-11-01 00:00:00'
                                  + INTERVAL (seq * {max(1, YEAR_SECONDS // rows)}) SECOND AS t
                      FROM seq_{start}_to_{end}) AS history
            """), {"first": first_user_id})  # noqa: S608
    with database.engine.begin() as conn:  # billed jobs have their usage row, as in real life
        conn.execute(text("""
            INSERT INTO usage_records (job_id, user_id, kind, model, input_tokens,
                output_tokens, total_tokens, image_count, cost, compute_cost, currency, path,
                created_at)
            SELECT id, user_id, kind, model, 12, 24, 36, IF(kind = 'image', 1, 0), 0.0001, 0,
                'CNY', 'dashscope', finished_at
            FROM jobs WHERE status = 'succeeded' AND correlation_id IS NULL
        """))


@dataclasses.dataclass(frozen=True)
class History:
    """A web server over a database holding `rows` jobs, and what to ask it."""

    url: str
    token: str
    job_ids: list[str]  # a random sample of the caller's jobs
    middle_cursor: str  # a cursor halfway down the caller's listing


def seed_history(stack, label: str, rows: int) -> History:
    """A fresh database with `rows` jobs (the bench user, id 1, owns 1%) behind its own web
    server; the Redis database is shared, so one token serves every history."""
    from bench.stack import HISTORY_DB

    name = stack._exit.enter_context(fresh_database(f"bailian_bench_{label}"))
    url = mysql_url(name)
    command.upgrade(alembic_config(url), "head")
    database = Database(url)
    try:
        with database.session() as session:
            user = users.create_user(session=session, username="history_owner",
                                     password="bench-password", role=Role.DEFAULT)
            assert user.id == 1, "the bench user must be the first user of its database"
        seed_users(database)
        seed_jobs(database, rows=rows, first_user_id=1)
        with database.session() as session:
            ids = list(session.scalars(select(Job.id).where(Job.user_id == 1)
                                       .order_by(func.rand()).limit(400)))
            owned = session.scalar(select(func.count()).select_from(Job)
                                   .where(Job.user_id == 1))
            middle = session.scalars(select(Job).where(Job.user_id == 1)
                                     .order_by(Job.created_at.desc(), Job.id.desc())
                                     .offset(owned // 2).limit(1)).one()
            cursor = encode_cursor(middle)
    finally:
        database.dispose()
    web = stack.start_web(f"web-history-{label}", DATABASE_URL=url,
                          REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{HISTORY_DB}")
    login = requests.post(f"{web}/api/auth/login", timeout=10,
                          json={"username": "history_owner", "password": "bench-password"})
    login.raise_for_status()
    return History(url=web, token=login.json()["data"]["access_token"], job_ids=ids,
                   middle_cursor=cursor)
