"""Durable copies of a succeeded job's images: DashScope's URLs die after 24 hours, so every
image is copied into our store (local directory or S3) and served from there. A failed copy is
retried with backoff for most of those 24 hours; meanwhile clients get DashScope's URL."""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

import requests

from common.infra.db import Database
from common.infra.log import bind_log_context
from common.infra.orm import utcnow
from common.infra.settings import Settings
from common.infra.storage import ImageStore, image_key
from common.jobs import queries
from common.jobs.lifecycle import JobLifecycle
from common.jobs.models import JobStatus
from common.jobs.results import GeneratedImage, ImageResult

logger = logging.getLogger(__name__)


class ImageCopies:
    def __init__(self, *, lifecycle: JobLifecycle, database: Database, settings: Settings,
                 store: ImageStore) -> None:
        self.lifecycle = lifecycle
        self.database = database
        self.settings = settings
        self.store = store

    def store_images(self, job_id: str) -> None:
        """Copy what is not copied yet; record where each image is, and when to try again."""
        with self.database.connect() as conn:
            job = queries.working_row(conn, job_id, "status", "next_action_at", "result",
                                      "finished_at", "user_id", "correlation_id")
        if job is None or job.status != JobStatus.SUCCEEDED or job.next_action_at is None:
            return
        bind_log_context(job_id=job_id, user_id=job.user_id, request_id=job.correlation_id)
        result = ImageResult.model_validate(job.result)
        failures = 0
        for index, image in result.images:
            if image.stored:
                continue
            try:
                self._copy(job_id, index, image)
            except (requests.RequestException, ValueError, OSError) as exc:
                failures += 1
                image.storage_error = str(exc)[:200]
                logger.warning("image copy failed index=%s error=%s", index, exc)
        age = (utcnow() - job.finished_at).total_seconds()
        give_up = failures and age > self.settings.image_store_give_up_seconds
        retry_in = min(300.0, max(5.0, age)) if failures and not give_up else None
        self.lifecycle.record_copies(job_id, result, retry_in=retry_in)

    def _copy(self, job_id: str, index: int, image: GeneratedImage) -> None:
        data, content_type = download_image(
            image.upstream_url, allowed_hosts=self.settings.image_download_hosts,
            max_bytes=self.settings.image_max_bytes,
            timeout=self.settings.upstream_timeout_seconds,
            allow_http=self.settings.image_download_allow_http)
        key = image_key(job_id, index, content_type)
        self.store.put(key, data, content_type)
        image.stored, image.key, image.size, image.content_type = True, key, len(data), \
            content_type
        image.sha256, image.storage_error = hashlib.sha256(data).hexdigest(), None


def download_image(url: str, *, allowed_hosts: list[str], max_bytes: int,
                   timeout: float, allow_http: bool = False) -> tuple[bytes, str]:
    """Fetch an upstream image: allow-listed hosts only (https, or http on loopback), a size
    cap, and an image content type, because the URL comes from a third party."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    plain_ok = allow_http or host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and plain_ok):
        raise ValueError(f"refusing to download over {parts.scheme or 'no scheme'}: {url}")
    if not any(host == h.lstrip(".") or (h.startswith(".") and host.endswith(h))
               for h in allowed_hosts):
        raise ValueError(f"host {host!r} is not in IMAGE_DOWNLOAD_HOSTS")
    with requests.get(url, stream=True, timeout=timeout, allow_redirects=False) as response:
        response.raise_for_status()
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise ValueError(f"not an image: {content_type or 'no content type'}")
        data = bytearray()
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) > max_bytes:
                raise ValueError(f"image larger than {max_bytes} bytes")
    return bytes(data), content_type
