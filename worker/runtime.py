"""The resources a worker process uses, created on first use in that process."""

from __future__ import annotations

import dataclasses
import functools

import redis

from common.ai.base import AIBackend
from common.ai.factory import chat_backend
from common.db import Database, database_from_settings
from common.redis_client import redis_from_settings
from common.settings import Settings, get_settings


@dataclasses.dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: redis.Redis
    chat_backend: AIBackend


@functools.cache
def get() -> Runtime:
    settings = get_settings()
    return Runtime(settings=settings, database=database_from_settings(settings),
                   redis=redis_from_settings(settings), chat_backend=chat_backend(settings))


def reset() -> None:
    """Forget resources inherited across a fork; the next task builds its own."""
    if get.cache_info().currsize:
        get().database.dispose()
    get.cache_clear()
