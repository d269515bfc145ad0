"""A tiny, valid, deterministic MP4 for emulated video tasks, and the checks of video and
image-edit submissions (dashscope-protocol-2.md sections 6 and 7).

The MP4 is built box by box (ISO/IEC 14496-12): `ftyp`, then `moov` (`mvhd`, one video `trak`
with its sample table), then `mdat` holding the one sample. Its sample bytes are a pattern
seeded by the task id, so every download of one task's video is byte-identical, and a
`video_kb=N` directive pads `mdat` to make large files (streamed, never built in memory).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

from emulator.errors import EmulatorError

EDIT_MODELS = {"wanx2.1-imageedit"}
EDIT_FUNCTIONS = {"stylization_all", "stylization_local", "description_edit",
                  "description_edit_with_mask", "remove_watermark", "expand",
                  "super_resolution", "colorization", "doodle", "control_cartoon_feature"}
T2V_MODELS = {"wanx2.1-t2v-turbo", "wanx2.1-t2v-plus", "wan2.2-t2v-plus", "wan2.5-t2v-preview"}
I2V_MODELS = {"wanx2.1-i2v-turbo", "wanx2.1-i2v-plus", "wan2.2-i2v-flash", "wan2.2-i2v-plus",
              "wan2.5-i2v-preview"}
KF2V_MODELS = {"wanx2.1-kf2v-plus", "wan2.2-kf2v-flash"}
WIDTH, HEIGHT, FPS = 64, 64, 16
CHUNK = 64 * 1024


def validate_edit(body: dict) -> tuple[str, str, int, list[str]]:
    """(model, prompt, n, image URLs) of a valid image2image submission."""
    model = body.get("model")
    if model not in EDIT_MODELS:
        raise EmulatorError(404, "ModelNotFound", "Model can not be found.")
    body_input = body.get("input") or {}
    prompt = body_input.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise EmulatorError(400, "InvalidParameter", "Field required: input.prompt")
    function = body_input.get("function")
    if function not in EDIT_FUNCTIONS:
        raise EmulatorError(400, "InvalidParameter", "input.function is not supported")
    base = body_input.get("base_image_url")
    if not base:
        raise EmulatorError(400, "InvalidParameter", "Field required: input.base_image_url")
    urls = [base]
    mask = body_input.get("mask_image_url")
    if function == "description_edit_with_mask":
        if not mask:
            raise EmulatorError(400, "InvalidParameter",
                                "Field required: input.mask_image_url")
        urls.append(mask)
    n = (body.get("parameters") or {}).get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 4:
        raise EmulatorError(400, "InvalidParameter", "n should be in [1, 4]")
    return model, prompt, n, urls


def validate_video(body: dict, path_is_keyframes: bool) -> tuple[str, str, int, list[str]]:
    """(model, prompt, duration, image URLs) of a valid video submission."""
    model = body.get("model")
    if model not in T2V_MODELS | I2V_MODELS | KF2V_MODELS:
        raise EmulatorError(404, "ModelNotFound", "Model can not be found.")
    if (model in KF2V_MODELS) != path_is_keyframes:
        raise EmulatorError(400, "InvalidParameter", "Model not supported on this endpoint.")
    body_input = body.get("input") or {}
    params = body.get("parameters") or {}
    prompt = body_input.get("prompt") or ""
    if model in T2V_MODELS and not prompt:
        raise EmulatorError(400, "InvalidParameter", "Field required: input.prompt")
    urls = []
    if model in I2V_MODELS:
        if not body_input.get("img_url"):
            raise EmulatorError(400, "InvalidParameter", "Field required: input.img_url")
        urls.append(body_input["img_url"])
    if model in KF2V_MODELS:
        if not body_input.get("first_frame_url"):
            raise EmulatorError(400, "InvalidParameter",
                                "Field required: input.first_frame_url")
        urls += [body_input[k] for k in ("first_frame_url", "last_frame_url")
                 if body_input.get(k)]
    duration = params.get("duration", 5)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 2 <= duration <= 15:
        raise EmulatorError(400, "InvalidParameter", "duration is out of range")
    return model, prompt, duration, urls


# --- the MP4 -------------------------------------------------------------------------------

def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + payload)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _moov(seconds: int, sample_size: int, mdat_offset: int) -> bytes:
    timescale, duration = 1000, seconds * 1000
    mvhd = _full(b"mvhd", struct.pack(">IIII", 0, 0, timescale, duration)
                 + struct.pack(">IH", 0x10000, 0x100) + b"\0" * 10 + _MATRIX + b"\0" * 24
                 + struct.pack(">I", 2))
    tkhd = _full(b"tkhd", struct.pack(">IIIII", 0, 0, 1, 0, duration) + b"\0" * 8
                 + struct.pack(">HHHH", 0, 0, 0, 0) + _MATRIX
                 + struct.pack(">II", WIDTH << 16, HEIGHT << 16), flags=3)
    mdhd = _full(b"mdhd", struct.pack(">IIII", 0, 0, timescale, duration)
                 + struct.pack(">HH", 0x55C4, 0))  # language "und"
    hdlr = _full(b"hdlr", struct.pack(">I", 0) + b"vide" + b"\0" * 12 + b"VideoHandler\0")
    vmhd = _full(b"vmhd", b"\0" * 8, flags=1)
    dinf = _box(b"dinf", _full(b"dref", struct.pack(">I", 1) + _full(b"url ", b"", flags=1)))
    # A VP9 sample entry ('vp09' with its 'vpcC': profile 0, level 1, 8-bit 4:2:0, BT.709)
    # with its mandatory fields; the sample's bytes are opaque. VP9, not 'mp4v': a browser's
    # <video> reads this header (loadedmetadata) only for a codec it supports, and MPEG-4
    # Part 2 is none (chromium: "no supported streams"), while VP9 needs no codec setup data.
    entry = (b"\0" * 6 + struct.pack(">H", 1) + b"\0" * 16
             + struct.pack(">HHIIIH", WIDTH, HEIGHT, 0x480000, 0x480000, 0, 1)
             + b"\0" * 32 + struct.pack(">Hh", 0x18, -1))
    vpcc = _full(b"vpcC", struct.pack(">BBBBBBH", 0, 10, 8 << 4, 1, 1, 1, 0), version=1)
    stsd = _full(b"stsd", struct.pack(">I", 1) + _box(b"vp09", entry + vpcc))
    stts = _full(b"stts", struct.pack(">III", 1, 1, duration))
    stsc = _full(b"stsc", struct.pack(">IIII", 1, 1, 1, 1))
    stsz = _full(b"stsz", struct.pack(">III", 0, 1, sample_size))
    stco = _full(b"stco", struct.pack(">II", 1, mdat_offset + 8))
    stbl = _box(b"stbl", stsd + stts + stsc + stsz + stco)
    minf = _box(b"minf", vmhd + dinf + stbl)
    trak = _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf))
    return _box(b"moov", mvhd + trak)


_FTYP = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")


def _layout(seconds: int, size_kb: int) -> tuple[bytes, int]:
    """(the header: ftyp + moov + mdat's box header, the sample's size)."""
    sample = max(1024, size_kb * 1024)
    moov_len = len(_moov(seconds, sample, 0))
    header = _FTYP + _moov(seconds, sample, len(_FTYP) + moov_len)
    return header + struct.pack(">I", 8 + sample) + b"mdat", sample


def mp4_size(seconds: int, size_kb: int) -> int:
    header, sample = _layout(seconds, size_kb)
    return len(header) + sample


def mp4_chunks(seed: str, seconds: int, size_kb: int) -> Iterator[bytes]:
    """The video's bytes, chunk by chunk: the same bytes for the same arguments."""
    header, sample = _layout(seconds, size_kb)
    yield header
    block = hashlib.sha256(seed.encode()).digest() * (CHUNK // 32)
    left = sample
    while left:
        piece = block[:min(CHUNK, left)]
        left -= len(piece)
        yield piece


def mp4_bytes(seed: str, seconds: int, size_kb: int = 1) -> bytes:
    return b"".join(mp4_chunks(seed, seconds, size_kb))
