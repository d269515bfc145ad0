"""The resources a worker process uses, created on first use in that process."""

from __future__ import annotations

import dataclasses
import functools

import redis

from common.infra.db import Database, database_from_settings
from common.infra.redis_client import redis_from_settings
from common.infra.settings import Settings, get_settings
from common.infra.storage import image_store
from common.jobs.chat import ChatJobs
from common.jobs.image_copies import ImageCopies
from common.jobs.input_images import InputImages
from common.jobs.lifecycle import JobLifecycle
from common.jobs.tasks import TaskJobs
from common.upstream.backends import backends
from common.upstream.file_upload import FileUploader


@dataclasses.dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: redis.Redis
    lifecycle: JobLifecycle
    chat: ChatJobs
    images: TaskJobs  # every async-task kind: text-to-image, image edit, video
    image_copies: ImageCopies


_concurrency: int | None = None
UPSTREAM_POOL_MIN = 64
# Jobs hold a database connection only to claim and to commit, not while they wait on
# upstream: one pooled connection per this many slots (a 1,000-greenlet streams worker
# ending a burst of streams at once would otherwise queue past the pool timeout).
SLOTS_PER_DB_CONNECTION = 40


def configure(*, concurrency: int | None) -> None:
    """What the pool runs at (Celery's worker_init), before the first task builds the
    runtime."""
    global _concurrency
    _concurrency = concurrency


@functools.cache
def get() -> Runtime:
    from worker.celery_app import app  # the worker publishes with its own app

    settings = get_settings()
    database = database_from_settings(
        settings, pool_size=(_concurrency or 0) // SLOTS_PER_DB_CONNECTION)
    redis_client = redis_from_settings(settings)
    available = backends(settings, pool_size=max(UPSTREAM_POOL_MIN, _concurrency or 0))
    lifecycle = JobLifecycle.of(settings=settings, database=database,
                                redis_client=redis_client, celery=app)
    store = image_store(settings)
    input_images = InputImages(database=database, store=store,
                               uploader=FileUploader.from_settings(settings)
                               if settings.dashscope_configured else None)
    return Runtime(
        settings=settings, database=database, redis=redis_client, lifecycle=lifecycle,
        chat=ChatJobs(lifecycle=lifecycle, backends=available, redis_client=redis_client,
                      settings=settings),
        images=TaskJobs(lifecycle=lifecycle, database=database, backends=available,
                        redis_client=redis_client, settings=settings,
                        input_images=input_images),
        image_copies=ImageCopies(lifecycle=lifecycle, database=database, settings=settings,
                                 store=store))


def reset() -> None:
    """Forget resources inherited across a fork; the next task builds its own."""
    if get.cache_info().currsize:
        get().database.dispose()
    get.cache_clear()
