"""The resources a worker process uses, created on first use in that process."""

from __future__ import annotations

import dataclasses
import functools

import redis

from common.infra.db import Database, database_from_settings
from common.infra.redis_client import redis_from_settings
from common.infra.settings import Settings, get_settings
from common.infra.storage import image_store
from common.jobs.image import ImageJobs
from common.upstream.backends import backends
from common.upstream.interface import AIBackend


@dataclasses.dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: redis.Redis
    backends: dict[str, AIBackend]
    images: ImageJobs


@functools.cache
def get() -> Runtime:
    settings = get_settings()
    database = database_from_settings(settings)
    redis_client = redis_from_settings(settings)
    available = backends(settings)
    images = ImageJobs(database=database, backends=available, redis_client=redis_client,
                       settings=settings, store=image_store(settings))
    return Runtime(settings=settings, database=database, redis=redis_client,
                   backends=available, images=images)


def reset() -> None:
    """Forget resources inherited across a fork; the next task builds its own."""
    if get.cache_info().currsize:
        get().database.dispose()
    get.cache_clear()
