"""Uploaded input images: POST /api/files (multipart, field `file`) and GET it back."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, request, send_file
from flask_jwt_extended import current_user

from common.errors import NotFound, ValidationFailed
from common.jobs.uploads import FileView
from web.authentication import login_required
from web.context import services
from web.envelope import ok
from web.openapi import ERROR, Raw, documented
from web.response_models import FileData

bp = Blueprint("files", __name__, url_prefix="/api/files")
# Room for the multipart framing around a file of UPLOAD_MAX_BYTES.
_FORM_OVERHEAD = 64 * 1024


@bp.post("")
@documented(summary="Upload an input image (multipart/form-data, field `file`)", tag="files",
            description="The type is sniffed from the bytes and the image decoded (PNG, JPEG, "
                        "WEBP, BMP) within UPLOAD_MAX_BYTES and UPLOAD_MAX_PIXELS; anything "
                        "else is a 400 and nothing is stored. Only you can read it back.",
            responses={201: FileData, 400: ERROR, 413: ERROR})
@login_required(api_keys=True)
def upload_file():
    svc = services()
    # This route alone takes more than MAX_CONTENT_LENGTH (Flask 3.1: per request).
    request.max_content_length = svc.settings.upload_max_bytes + _FORM_OVERHEAD
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("Send the image as multipart/form-data in the field `file`",
                               errors=[{"field": "file", "message": "missing"}],
                               code="invalid_file")
    # One byte past the limit is enough to refuse: never read more than that.
    data = upload.stream.read(svc.settings.upload_max_bytes + 1)
    view = svc.uploads.save(user_id=current_user.id, data=data, filename=upload.filename)
    return ok(file_data(view), "File uploaded", status=201)


@bp.get("/<file_id>")
@documented(summary="Your uploaded file's record", tag="files",
            responses={200: FileData, 404: ERROR})
@login_required(api_keys=True)
def get_file(file_id: str):
    return ok(file_data(services().uploads.find(file_id, user_id=current_user.id)))


@bp.get("/<file_id>/content")
@documented(summary="Your uploaded file's bytes", tag="files",
            responses={200: Raw("image/png", description="The image (its own type)"),
                       404: ERROR})
@login_required(api_keys=True)
def file_content(file_id: str):
    svc = services()
    view = svc.uploads.find(file_id, user_id=current_user.id)
    path = svc.image_store.local_path(view.key)
    if path is not None:
        return send_file(path, mimetype=view.content_type, conditional=True, etag=view.sha256)
    data = svc.image_store.read(view.key)  # S3: an upload is small, and private
    if data is None:
        raise NotFound("File not found", code="file_not_found")
    return Response(data, mimetype=view.content_type)


def file_data(view: FileView) -> FileData:
    return FileData(id=view.id, filename=view.filename, content_type=view.content_type,
                    size=view.size, width=view.width, height=view.height, sha256=view.sha256,
                    created_at=view.created_at.replace(tzinfo=dt.UTC).isoformat(),
                    url=services().shapes.public_url(f"/api/files/{view.id}/content"))
