"""Redis clients built from settings, with bounded waits so an outage surfaces as an error."""

from __future__ import annotations

import redis


def redis_from_settings(settings, *, socket_timeout: float | None = None) -> redis.Redis:
    timeout = socket_timeout if socket_timeout is not None else settings.redis_socket_timeout
    return redis.Redis.from_url(
        settings.redis_connection_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=True,
    )
