"""Durable copies of a succeeded job's files (images, a video and its poster): DashScope's URLs
die after 24 hours, so every file is copied into our store (local directory or S3) and served
from there. A failed copy is retried with backoff for most of those 24 hours; meanwhile clients
get DashScope's URL. Files are streamed from DashScope into the store, chunk by chunk, so a
video of hundreds of megabytes never sits whole in a worker's memory."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
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
from common.jobs.results import GeneratedImage, parse_result
from common.jobs.task_specs import TaskSpec, spec_of

logger = logging.getLogger(__name__)
CHUNK_BYTES = 256 * 1024


class ImageCopies:
    def __init__(self, *, lifecycle: JobLifecycle, database: Database, settings: Settings,
                 store: ImageStore) -> None:
        self.lifecycle = lifecycle
        self.database = database
        self.settings = settings
        self.store = store

    def store_images(self, job_id: str) -> None:
        """Copy what is not copied yet; record where each file is, and when to try again."""
        with self.database.connect() as conn:
            job = queries.working_row(conn, job_id, "status", "next_action_at", "result",
                                      "finished_at", "user_id", "correlation_id", "kind")
        if job is None or job.status != JobStatus.SUCCEEDED or job.next_action_at is None:
            return
        bind_log_context(job_id=job_id, user_id=job.user_id, request_id=job.correlation_id)
        spec = spec_of(job.kind)
        result = parse_result(job.kind, job.result)
        failures = 0
        for index, copy in result.copies:
            if copy.stored:
                continue
            try:
                self._copy(job_id, index, copy, spec)
            except (requests.RequestException, ValueError, OSError) as exc:
                failures += 1
                copy.storage_error = str(exc)[:200]
                logger.warning("copy failed index=%s error=%s", index, exc)
        age = (utcnow() - job.finished_at).total_seconds()
        give_up = failures and age > self.settings.image_store_give_up_seconds
        retry_in = min(300.0, max(5.0, age)) if failures and not give_up else None
        self.lifecycle.record_copies(job_id, job.kind, result, retry_in=retry_in)

    def _copy(self, job_id: str, index: int, copy: GeneratedImage, spec: TaskSpec) -> None:
        settings = self.settings
        with open_download(copy.upstream_url, allowed_hosts=settings.image_download_hosts,
                           timeout=settings.upstream_timeout_seconds,
                           allow_http=settings.image_download_allow_http) as response:
            content_type = response.headers.get("Content-Type", "").split(";")[0] \
                .strip().lower()
            if not spec.content_type_allowed(index, content_type):
                raise ValueError(f"unexpected content type: {content_type or 'none'}")
            if content_type == "application/octet-stream":
                content_type = "video/mp4"  # OSS serves some MP4s untyped
            digest, size = hashlib.sha256(), [0]
            key = image_key(job_id, index, content_type)
            self.store.put_stream(key, _capped(response, spec.max_bytes(settings, index),
                                               digest.update, size), content_type)
        copy.stored, copy.key, copy.size, copy.content_type = True, key, size[0], content_type
        copy.sha256, copy.storage_error = digest.hexdigest(), None


def _capped(response: requests.Response, max_bytes: int, on_chunk: Callable[[bytes], None],
            size: list[int]) -> Iterator[bytes]:
    for chunk in response.iter_content(CHUNK_BYTES):
        size[0] += len(chunk)
        if size[0] > max_bytes:
            raise ValueError(f"file larger than {max_bytes} bytes")
        on_chunk(chunk)
        yield chunk


def open_download(url: str, *, allowed_hosts: list[str], timeout: float,
                  allow_http: bool = False) -> requests.Response:
    """Start a streamed download of an upstream file: allow-listed hosts only (https, or http
    on loopback), because the URL comes from a third party. Use it as a context manager."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    plain_ok = allow_http or host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and plain_ok):
        raise ValueError(f"refusing to download over {parts.scheme or 'no scheme'}: {url}")
    if not any(host == h.lstrip(".") or (h.startswith(".") and host.endswith(h))
               for h in allowed_hosts):
        raise ValueError(f"host {host!r} is not in IMAGE_DOWNLOAD_HOSTS")
    response = requests.get(url, stream=True, timeout=timeout, allow_redirects=False)
    try:
        response.raise_for_status()
    except requests.HTTPError:
        response.close()
        raise
    return response
