"""Links to stored images: signed and expiring, so an <img> tag needs no Authorization header."""

from __future__ import annotations

import time

from flask import current_app, request, url_for

from common.infra.storage import sign_image_path, signature_valid
from web.context import services


def public_url(path: str) -> str:
    """The link to `path` a client is given: under PUBLIC_BASE_URL when set, else relative;
    never built from the request's Host header (a client could point it anywhere)."""
    base = services().settings.public_base_url
    return f"{base}{path}" if base else path


def image_path(job_id: str, index: int) -> str:
    return url_for("jobs.job_image", job_id=job_id, index=index)


def signed_image_url(job_id: str, index: int, key: str) -> str:
    svc = services()
    ttl = svc.settings.image_url_ttl_seconds
    direct = svc.image_store.presigned_url(key, ttl)
    if direct:
        return direct
    path = image_path(job_id, index)
    expires = int(time.time()) + ttl
    signature = sign_image_path(_secret(), path, expires)
    return public_url(f"{path}?expires={expires}&signature={signature}")


def signed_request_valid() -> bool:
    """Does this request carry a valid, unexpired signature for its own path?"""
    try:
        expires = int(request.args.get("expires", ""))
    except ValueError:
        return False
    return signature_valid(_secret(), request.path, expires, request.args.get("signature", ""))


def _secret() -> str:
    # The JWT secret, resolved once at start-up; rotating it also invalidates image links.
    return current_app.config["JWT_SECRET_KEY"]
