"""Durable copies of generated images and videos, and the files users upload: a local
directory by default, or an S3-compatible bucket.

DashScope's result URLs die after 24 hours, so every image or video a job produced is copied
here and served from here. Links handed to clients are signed and expire (S3: presigned URLs;
local: an HMAC over the file's path, checked by the web app). Videos are written as they
arrive (`put_stream`), never held whole in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from common.infra.settings import Settings


class ImageStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> None:
        """Store what `chunks` yields, without holding it all (readers never see a part)."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes, for stores the web app serves itself (None when missing)."""
        ...

    def read(self, key: str) -> bytes | None:
        """The bytes from any store (an input image on its way to DashScope)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file behind `key`, for stores the web app serves itself with HTTP ranges."""
        ...

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A direct link to the object, for stores that can sign one (else None)."""
        ...


class LocalImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(data)
        partial.replace(path)  # readers never see half an image

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        try:
            with partial.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.exists() else None

    read = get

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.exists() else None

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        return None


class S3ImageStore:
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        secret = settings.s3_secret_access_key
        self.bucket = settings.s3_bucket
        self.client = boto3.client(
            "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                          connect_timeout=5, read_timeout=30))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> None:
        # A multipart upload of 8 MiB parts (boto3's default): at most a few parts in memory.
        self.client.upload_fileobj(_ChunkReader(iter(chunks)), self.bucket, key,
                                   ExtraArgs={"ContentType": content_type})

    def get(self, key: str) -> bytes | None:
        return None  # served by presigned URL, never through the web app

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in)


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (what boto3's upload_fileobj reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def image_store(settings: Settings) -> ImageStore:
    if settings.image_storage == "s3":
        return S3ImageStore(settings)
    return LocalImageStore(settings.images_dir)


def image_key(job_id: str, index: int, content_type: str) -> str:
    return f"{job_id}/{index}.{extension_of(content_type)}"


def extension_of(content_type: str) -> str:
    return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/bmp": "bmp",
            "video/mp4": "mp4"}.get(content_type, "bin")


def upload_key(user_id: int, file_id: str, content_type: str) -> str:
    """Where a user's uploaded file is kept (beside job results, under its own prefix)."""
    return f"uploads/{user_id}/{file_id}.{extension_of(content_type)}"


def sign_image_path(secret: str, path: str, expires_at: int) -> str:
    return hmac.new(secret.encode(), f"{path}|{expires_at}".encode(), hashlib.sha256).hexdigest()


def signature_valid(secret: str, path: str, expires_at: int, signature: str) -> bool:
    if expires_at < time.time():
        return False
    return hmac.compare_digest(sign_image_path(secret, path, expires_at), signature)
