"""Files users upload as inputs of their jobs (POST /api/files): images, sniffed and decoded
with Pillow before anything is stored, kept in the result store under `uploads/`, readable by
their owner only. A refused upload stores nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid
import warnings

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from common.errors import NotFound, ValidationFailed
from common.infra.db import Database
from common.infra.orm import Base, BigId, Timestamp, utcnow
from common.infra.settings import Settings
from common.infra.storage import ImageStore, upload_key

# What DashScope's image inputs accept (dashscope-protocol-2.md section 7.3): Pillow's format
# name -> the content type the file is stored and sent as.
ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp",
                    "BMP": "image/bmp"}


class UploadedFile(Base):
    __tablename__ = "uploaded_files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class FileView(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    user_id: int
    key: str
    filename: str | None
    content_type: str
    size: int
    width: int
    height: int
    sha256: str
    created_at: dt.datetime


files = UploadedFile.__table__


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"field": "file", "message": message}],
                            code="invalid_file")


def sniff_image(data: bytes, *, max_pixels: int) -> tuple[str, int, int]:
    """(content type, width, height) of an image Pillow can decode, whatever its name or the
    client's content type say; ValidationFailed otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                kind = image.format
                if width * height > max_pixels:
                    raise _refuse(f"The image has {width}x{height} pixels; at most {max_pixels} "
                                  "are accepted")
                image.verify()  # the whole file, not only its header
    except ValidationFailed:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _refuse("The file is not an image (PNG, JPEG, WEBP or BMP)") from None
    if kind not in ACCEPTED_FORMATS:
        raise _refuse(f"{kind} images are not accepted; send PNG, JPEG, WEBP or BMP")
    return ACCEPTED_FORMATS[kind], width, height


class Uploads:
    def __init__(self, *, database: Database, store: ImageStore, settings: Settings) -> None:
        self.database = database
        self.store = store
        self.settings = settings

    def save(self, *, user_id: int, data: bytes, filename: str | None) -> FileView:
        """Check, store, record: the row is written only once the bytes are stored."""
        if not data:
            raise _refuse("The file is empty")
        limit = self.settings.upload_max_bytes
        if len(data) > limit:
            raise _refuse(f"The file has {len(data)} bytes; at most {limit} are accepted")
        content_type, width, height = sniff_image(data,
                                                  max_pixels=self.settings.upload_max_pixels)
        file_id = str(uuid.uuid4())
        key = upload_key(user_id, file_id, content_type)
        self.store.put(key, data, content_type)
        values = {"id": file_id, "user_id": user_id, "key": key,
                  "filename": (filename or None) and filename[:255],
                  "content_type": content_type, "size": len(data), "width": width,
                  "height": height, "sha256": hashlib.sha256(data).hexdigest(),
                  "created_at": utcnow()}
        with self.database.transaction() as conn:
            conn.execute(files.insert().values(**values))
        return FileView(**values)

    def find(self, file_id: str, *, user_id: int) -> FileView:
        """The owner's file; anyone else (admins too: uploads are private) gets a 404."""
        with self.database.connect() as conn:
            row = conn.execute(select(files).where(files.c.id == file_id[:36])).one_or_none()
        if row is None or row.user_id != user_id:
            raise NotFound("File not found", code="file_not_found")
        return FileView.model_validate(row._asdict())
