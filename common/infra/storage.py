"""Durable copies of generated images: a local directory by default, or an S3-compatible bucket.

DashScope's result URLs die after 24 hours, so every image a job produced is copied here and
served from here. Links handed to clients are signed and expire (S3: presigned URLs; local:
an HMAC over the image's path, checked by the web app).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Protocol

from common.infra.settings import Settings


class ImageStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The bytes, for stores the web app serves itself (None when missing)."""
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

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.exists() else None

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

    def get(self, key: str) -> bytes | None:
        return None

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in)


def image_store(settings: Settings) -> ImageStore:
    if settings.image_storage == "s3":
        return S3ImageStore(settings)
    return LocalImageStore(settings.images_dir)


def image_key(job_id: str, index: int, content_type: str) -> str:
    extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(
        content_type, "bin")
    return f"{job_id}/{index}.{extension}"


def sign_image_path(secret: str, path: str, expires_at: int) -> str:
    return hmac.new(secret.encode(), f"{path}|{expires_at}".encode(), hashlib.sha256).hexdigest()


def signature_valid(secret: str, path: str, expires_at: int, signature: str) -> bool:
    if expires_at < time.time():
        return False
    return hmac.compare_digest(sign_image_path(secret, path, expires_at), signature)
