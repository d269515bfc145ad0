"""Images in chat messages (dashscope-protocol-2.md section 3): what the platform accepts, and
how each reaches DashScope.

- An https URL is passed on as it is: DashScope fetches it; the platform never does (a
  client's URL fetched from inside the platform would be a server-side request forgery).
- A `data:` URL is decoded and checked when the request arrives (type, size, dimensions),
  before any job exists, so a bad image is a 400 and never a failed job. The worker uploads
  its bytes to DashScope's temporary storage (common/upstream/file_upload.py) when it runs
  the job and sends the `oss://` URL instead: the web request makes no upstream call, and a
  failed upload is retried like any upstream failure.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io

from PIL import Image, UnidentifiedImageError

from common.upstream.dashscope_messages import data_url_parts, is_data_url

# DashScope's vision input formats (section 3.6) that Pillow can read, by Pillow's name.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp",
           "TIFF": "image/tiff"}
MIN_SIDE = 10  # DashScope: width and height over 10 px
MAX_ASPECT_RATIO = 200  # and the longer side at most 200x the shorter
MAX_URL_CHARS = 2048


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    data: bytes
    content_type: str  # what the bytes are (Pillow's reading)
    width: int
    height: int


class ImageRefused(ValueError):
    """An image the platform will not send, with the reason a client can act on."""


def checked(url: str, *, max_bytes: int) -> DecodedImage | None:
    """The image of a `data:` URL (None for an https URL), or ImageRefused saying why not."""
    if not is_data_url(url):
        if not url.lower().startswith("https://") or len(url) > MAX_URL_CHARS:
            raise ImageRefused(f"must be an https URL (at most {MAX_URL_CHARS} characters) or "
                               "a data: URL")
        return None
    return decode(url, max_bytes=max_bytes)


def decode(url: str, *, max_bytes: int) -> DecodedImage:
    parts = data_url_parts(url)
    if parts is None:
        raise ImageRefused("a data: URL must be data:<image type>;base64,<data>")
    claimed, encoded = parts
    # Refused before decoding: base64 is 4 characters per 3 bytes.
    if len(encoded) * 3 // 4 > max_bytes + 2:
        raise ImageRefused(f"the image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused("the data: URL is not valid base64") from None
    if len(data) > max_bytes:
        raise ImageRefused(f"the image is larger than {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ImageRefused("the data is not an image of a supported type") from None
    if kind not in FORMATS:
        raise ImageRefused(f"{kind} images are not supported; send one of "
                           f"{', '.join(sorted(FORMATS))}")
    if FORMATS[kind] != claimed.replace("image/jpg", "image/jpeg"):
        # The worker uploads the bytes under the URL's type: it must be what they are.
        raise ImageRefused(f"the data is {FORMATS[kind]}, not {claimed}")
    if min(width, height) <= MIN_SIDE or max(width, height) > MAX_ASPECT_RATIO * min(
            width, height):
        raise ImageRefused(f"the image is {width}x{height}: both sides must exceed {MIN_SIDE} "
                           f"px and the longer be at most {MAX_ASPECT_RATIO}x the shorter")
    return DecodedImage(data=data, content_type=FORMATS[kind], width=width, height=height)
