"""POST /api/files: images only (sniffed and decoded), within the size and pixel limits,
stored like job results, readable by their owner only; a refused upload stores nothing."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from common.jobs.uploads import UploadedFile
from tests.support.images import jpeg, noisy_png, png, upload


def _stored_uploads(settings, user_id: int) -> list:
    """The user's stored uploads (user ids restart with each test database, and the store's
    folder outlives it: tests compare before and after)."""
    folder = settings.images_dir / "uploads" / str(user_id)
    return sorted(folder.iterdir()) if folder.exists() else []


def _rows(database, user_id: int) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(UploadedFile)
                              .where(UploadedFile.user_id == user_id))


def test_an_image_is_sniffed_stored_and_readable_by_its_owner_only(client, accounts, settings):
    account, headers = accounts.headers()
    data = jpeg(40, 30)
    # The name and the client's type say PNG; the bytes are a JPEG, and that is what counts.
    response = upload(client, headers, data, filename="photo.png")
    assert response.status_code == 201, response.json
    file = response.json["data"]
    assert (file["content_type"], file["width"], file["height"]) == ("image/jpeg", 40, 30)
    assert file["size"] == len(data) and file["sha256"] == hashlib.sha256(data).hexdigest()
    stored = settings.images_dir / "uploads" / str(account["id"]) / f"{file['id']}.jpg"
    assert stored.read_bytes() == data

    assert client.get(f"/api/files/{file['id']}", headers=headers).json["data"] == file
    content = client.get(file["url"], headers=headers)
    assert content.status_code == 200 and content.data == data
    assert content.mimetype == "image/jpeg"
    _, stranger = accounts.headers()
    assert client.get(f"/api/files/{file['id']}", headers=stranger).status_code == 404
    assert client.get(file["url"], headers=stranger).status_code == 404
    assert client.get(file["url"]).status_code == 401


@pytest.mark.parametrize("data, message", [
    (b"%PDF-1.4 not an image at all", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not an image"),  # a PNG signature, no image
    (b"", "empty"),
])
def test_what_is_not_an_image_is_refused_and_nothing_is_stored(client, accounts, database,
                                                                settings, data, message):
    account, headers = accounts.headers()
    before = _stored_uploads(settings, account["id"])
    response = upload(client, headers, data)
    assert response.status_code == 400, response.json
    assert response.json["code"] == 400 and message in response.json["message"]
    assert response.json["errors"] == [{"field": "file", "message": response.json["message"]}]
    assert _stored_uploads(settings, account["id"]) == before
    assert _rows(database, account["id"]) == 0


def test_too_large_or_too_many_pixels_is_refused_and_nothing_is_stored(settings, database):
    from tests.conftest import Accounts
    from web.app import create_app

    small = create_app(settings.model_copy(update={"upload_max_bytes": 2000,
                                                   "upload_max_pixels": 64 * 64})).test_client()
    account, headers = Accounts(database, small).headers()
    before = _stored_uploads(settings, account["id"])
    big = noisy_png(30, 30)  # a real image of 900 pixels, but over 2,000 bytes
    assert len(big) > 2000
    response = upload(small, headers, big)
    assert response.status_code == 400
    assert "at most 2000" in response.json["message"]
    wide = upload(small, headers, png(100, 50))  # 5,000 pixels > 4,096
    assert wide.status_code == 400 and "pixels" in wide.json["message"]
    assert _stored_uploads(settings, account["id"]) == before  # nothing of the refusals
    assert upload(small, headers, png(64, 64)).status_code == 201
    assert len(_stored_uploads(settings, account["id"])) == len(before) + 1
    assert _rows(database, account["id"]) == 1


def test_a_request_without_the_file_field_is_a_clear_400(client, accounts):
    _, headers = accounts.headers()
    response = client.post("/api/files", headers=headers, data={"other": "x"},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json["errors"] == [{"field": "file", "message": "missing"}]
