"""Dependency checks for the readiness probe, each bounded so the probe answers within 2 s."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from common.infra.db import tls_connect_args

logger = logging.getLogger(__name__)

CONNECTED = "connected"
# What an anonymous caller of the probe learns: a short reason, never the driver's message
# (host names, user names, server versions); the full error goes to the log.
TIMEOUT, CONNECTION_FAILED, CHECK_FAILED = "error: timeout", "error: connection failed", \
    "error: check failed"
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")


def dependency_checks(settings) -> dict[str, Callable[[], str]]:
    """The checks of MySQL and Redis, as the readiness probe and the health gauge run them."""
    timeout = settings.health_check_timeout
    return {
        "database": functools.partial(check_database, settings.sqlalchemy_url, timeout,
                                      settings.db_ssl_mode, settings.db_ssl_ca),
        "redis": functools.partial(check_redis, settings.redis_connection_url, timeout),
    }


@functools.lru_cache(maxsize=4)
def _probe_engine(url: str, timeout: float, ssl_mode: str, ssl_ca: Path | None):
    # A separate pool-less engine with short driver timeouts: the probe must not queue behind
    # (or be starved by) the application's pool, and a hung server must not hang the probe.
    connect_args = {}
    if make_url(url).get_backend_name() == "mysql":
        connect_args = {"connect_timeout": timeout, "read_timeout": timeout,
                        "write_timeout": timeout, **tls_connect_args(ssl_mode, ssl_ca)}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def check_database(url: str, timeout: float, ssl_mode: str = "disabled",
                   ssl_ca: Path | None = None) -> str:
    with _probe_engine(url, timeout, ssl_mode, ssl_ca).connect() as connection:
        connection.execute(text("SELECT 1"))
    return CONNECTED


def check_redis(url: str, timeout: float) -> str:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()
    return CONNECTED


def run_checks(checks: dict, timeout: float) -> dict[str, str]:
    """Run named zero-argument checks concurrently; each yields 'connected' or a short public
    reason ('error: timeout', 'error: connection failed', 'error: check failed'), the full
    error logged."""
    futures = {name: _pool.submit(check) for name, check in checks.items()}
    concurrent.futures.wait(futures.values(), timeout=timeout + 0.3)
    results = {}
    for name, future in futures.items():
        if not future.done():
            logger.warning("health check %s: no answer within %.1fs", name, timeout + 0.3)
            results[name] = TIMEOUT
            continue
        try:
            results[name] = future.result()
        except Exception as exc:
            logger.warning("health check %s failed: %s", name, _full_message(exc))
            results[name] = public_reason(exc)
    return results


def public_reason(exc: BaseException) -> str:
    """The short reason for a failed check: a timeout anywhere in the exception's chain (the
    drivers wrap socket timeouts in their own errors), else a connection failure for the
    connection errors the drivers raise, else a generic failure."""
    chain = _chain(exc)
    if any(isinstance(e, (TimeoutError, socket.timeout, redis.exceptions.TimeoutError))
           for e in chain):
        return TIMEOUT
    if any(isinstance(e, (ConnectionError, OSError, redis.exceptions.ConnectionError,
                          DBAPIError)) for e in chain):
        return CONNECTION_FAILED
    return CHECK_FAILED


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = (getattr(current, "orig", None) or current.__cause__
                   or current.__context__)
    return seen


def _full_message(exc: BaseException) -> str:
    return " <- ".join(f"{type(e).__name__}: {e}".strip().replace("\n", " ")
                       for e in _chain(exc))[:1000]
