"""Links to stored images: signed and expiring, so an <img> tag needs no Authorization header."""

from __future__ import annotations

import time

from flask import current_app, request, url_for

from common.infra.storage import sign_image_path, signature_valid
from common.jobs.models import Job
from web.context import services


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
    return f"{request.host_url.rstrip('/')}{path}?expires={expires}&signature={signature}"


def render_generation(job: Job) -> dict:
    """A generation job's result for clients: our stored copies first, DashScope's URL (valid
    for 24 hours) only while the copy is pending."""
    output = dict(job.result["output"])
    rendered = []
    for index, entry in enumerate(output["results"]):
        if "upstream_url" not in entry:
            rendered.append({"code": entry.get("code"), "message": entry.get("message")})
            continue
        stored = bool(entry.get("stored"))
        rendered.append({
            "url": signed_image_url(job.id, index, entry["key"]) if stored
            else entry["upstream_url"],
            "stored": stored, "upstream_url": entry["upstream_url"],
            "size": entry.get("size"), "content_type": entry.get("content_type")})
    output["results"] = rendered
    return {"output": output, "usage": job.result.get("usage"), "job_id": job.id}


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
