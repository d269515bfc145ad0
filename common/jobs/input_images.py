"""The input images of an image edit or a video, as URLs DashScope can read.

A job's request names each input image (`images`: field -> reference) in one of three ways:

    {"url": "https://..."}             a URL the client gave: sent as it is (the platform never
                                       fetches a client's URL itself)
    {"file_id": "..."}                 an image the user uploaded (POST /api/files)
    {"job_id": "...", "index": N}      an image (or video poster) of one of the user's own
                                       succeeded jobs

Uploaded and job images are in our store, which DashScope cannot read: they reach it through
its temporary file upload (common/upstream/file_upload.py), as the SDK sends local files, and
the task then names them by `oss://` URL. The web tier checked the references when the job was
submitted; the worker reads them again here, so an image deleted meanwhile fails the job
cleanly instead of sending DashScope a dead reference.
"""

from __future__ import annotations

from sqlalchemy import select

from common.infra.db import Database
from common.infra.storage import ImageStore
from common.jobs import queries
from common.jobs.lifecycle import Claim
from common.jobs.models import JobStatus
from common.jobs.results import parse_result
from common.jobs.uploads import files
from common.upstream.failures import UpstreamError
from common.upstream.file_upload import FileUploader

INPUT_IMAGE_UNAVAILABLE = "input_image_unavailable"


class InputImages:
    def __init__(self, *, database: Database, store: ImageStore,
                 uploader: FileUploader | None) -> None:
        self.database = database
        self.store = store
        self.uploader = uploader

    def resolve(self, claim: Claim) -> dict[str, str]:
        """field -> URL for each input image of the job (empty for text-only tasks)."""
        return {field: self._url(claim, field, reference)
                for field, reference in claim.request.get("images", {}).items()}

    def _url(self, claim: Claim, field: str, reference: dict) -> str:
        if "url" in reference:
            return reference["url"]
        key, content_type = self._stored(claim.user_id, reference, field)
        data = self.store.read(key)
        if data is None:
            raise _unavailable(f"{field}: the stored image is gone")
        if self.uploader is None:
            raise UpstreamError(code="FileUploadNotConfigured", status=None, retryable=False,
                                message="This worker cannot upload files to DashScope")
        return self.uploader.upload(data, model=claim.model, filename=key.rsplit("/", 1)[-1],
                                    content_type=content_type)

    def _stored(self, user_id: int, reference: dict, field: str) -> tuple[str, str]:
        """(store key, content type) of an uploaded file or a job's stored image."""
        with self.database.connect() as conn:
            if "file_id" in reference:
                row = conn.execute(select(files.c.key, files.c.content_type).where(
                    files.c.id == reference["file_id"], files.c.user_id == user_id)
                ).one_or_none()
                if row is None:
                    raise _unavailable(f"{field}: file {reference['file_id']} not found")
                return row.key, row.content_type
            job = queries.working_row(conn, reference["job_id"], "user_id", "kind", "status",
                                      "result")
        copy = stored_copy(job, user_id, reference.get("index", 0))
        if copy is None:
            raise _unavailable(f"{field}: job {reference['job_id']} has no stored image "
                               f"{reference.get('index', 0)}")
        return copy


def stored_copy(job, user_id: int, index: int) -> tuple[str, str] | None:
    """(key, content type) of image `index` of `job` (a working row with user_id, kind,
    status and result) if the user owns the job and the image is stored."""
    if job is None or job.user_id != user_id or job.status != JobStatus.SUCCEEDED:
        return None
    result = parse_result(job.kind, job.result)
    for position, copy in getattr(result, "copies", []):
        if position == index and copy.stored and (copy.content_type or "").startswith("image/"):
            return copy.key, copy.content_type
    return None


def _unavailable(message: str) -> UpstreamError:
    return UpstreamError(code=INPUT_IMAGE_UNAVAILABLE, status=None, retryable=False,
                         message=message)





def reference_errors(database: Database, user_id: int, images: dict[str, dict],
                     names: dict[str, str]) -> list[dict]:
    """Per-field errors for stored references the user may not use (missing, someone
    else's, a job without that stored image): checked when the job is submitted, so a bad
    reference is a 400, not a failed job. `names`: upstream field -> request field."""
    errors = []
    with database.connect() as conn:
        for field, reference in images.items():
            if "file_id" in reference:
                found = conn.execute(select(files.c.id).where(
                    files.c.id == reference["file_id"], files.c.user_id == user_id)
                ).one_or_none()
                if found is None:
                    errors.append({"field": names[field], "message": "no such uploaded file"})
            elif "job_id" in reference:
                job = queries.working_row(conn, reference["job_id"], "user_id", "kind",
                                          "status", "result") \
                    if queries.looks_like_uuid(reference["job_id"]) else None
                if stored_copy(job, user_id, reference["index"]) is None:
                    errors.append({"field": names[field], "message": (
                        "no stored image with that index in a succeeded job of yours")})
    return errors
