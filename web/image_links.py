"""Links to stored images: signed and expiring, so an <img> tag needs no Authorization header.
They are made in common/jobs/shapes.py (the worker's webhooks carry them too); here they are
checked."""

from __future__ import annotations

from flask import current_app, request

from common.infra.storage import signature_valid
from web.context import services


def public_url(path: str) -> str:
    """The link to `path` a client is given (see JobShapes.public_url)."""
    return services().shapes.public_url(path)


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
