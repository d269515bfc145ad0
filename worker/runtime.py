"""The resources a worker process uses, created on first use in that process."""

from __future__ import annotations

import dataclasses
import functools

import redis

from common.ai.base import AIBackend
from common.ai.factory import chat_backend, image_backend
from common.db import Database, database_from_settings
from common.images import ImageJobs
from common.redis_client import redis_from_settings
from common.settings import Settings, get_settings
from common.storage import image_store


@dataclasses.dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: redis.Redis
    chat_backend: AIBackend
    images: ImageJobs


@functools.cache
def get() -> Runtime:
    settings = get_settings()
    database = database_from_settings(settings)
    redis_client = redis_from_settings(settings)
    images = ImageJobs(database=database, backend=image_backend(settings),
                       redis_client=redis_client, settings=settings,
                       store=image_store(settings))
    return Runtime(settings=settings, database=database, redis=redis_client,
                   chat_backend=chat_backend(settings), images=images)


def reset() -> None:
    """Forget resources inherited across a fork; the next task builds its own."""
    if get.cache_info().currsize:
        get().database.dispose()
    get.cache_clear()
