"""The emulator's image-edit and video tasks through the real `dashscope` SDK: the endpoints
the SDK routes to by model, input images that must have been uploaded before a task naming
them is accepted, video usage fields like DashScope's, and a tiny MP4 that parses."""

from __future__ import annotations

import struct
import time

import dashscope
import pytest
import requests
from dashscope import ImageSynthesis, VideoSynthesis

from common.upstream.file_upload import FileUploader
from emulator import videos
from tests.support.images import png
from tests.support.stack import EMULATOR_KEY


def _call(fn, emu, **kwargs):
    return fn(api_key=EMULATOR_KEY, base_address=emu.api_base, **kwargs)


def _finish(emu, task_id: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        body = requests.get(f"{emu.api_base}/tasks/{task_id}", timeout=5,
                            headers={"Authorization": f"Bearer {EMULATOR_KEY}"}).json()
        if body["output"]["task_status"] in ("SUCCEEDED", "FAILED") or \
                time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def _boxes(data: bytes) -> list[bytes]:
    kinds, at = [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        assert size >= 8
        kinds.append(kind)
        at += size
    assert at == len(data)  # the boxes tile the file exactly
    return kinds


def test_text_to_video_task_reports_usage_and_serves_a_valid_mp4(fresh_emulator):
    emu = fresh_emulator
    submitted = _call(VideoSynthesis.async_call, emu, model="wan2.2-t2v-plus",
                      prompt="a cat [[emulator: duration_s=0.2; video_kb=3]]",
                      size="832*480", duration=5)
    assert submitted.status_code == 200, submitted
    body = _finish(emu, submitted.output.task_id)
    output = body["output"]
    assert output["task_status"] == "SUCCEEDED" and output["task_id"]
    assert body["usage"]["video_duration"] == body["usage"]["duration"] == 5
    assert body["usage"]["video_count"] == 1 and "SR" in body["usage"]
    mp4 = requests.get(output["video_url"], timeout=5)
    assert mp4.headers["Content-Type"] == "video/mp4"
    assert _boxes(mp4.content) == [b"ftyp", b"moov", b"mdat"]
    assert mp4.content == videos.mp4_bytes(output["task_id"], 5, 3)  # deterministic
    assert requests.get(output["cover_image_url"], timeout=5).content.startswith(b"\x89PNG")


def test_a_pending_video_has_an_empty_url_and_the_sdk_parses_it(fresh_emulator):
    emu = fresh_emulator
    submitted = _call(VideoSynthesis.async_call, emu, model="wan2.2-t2v-plus",
                      prompt="slow [[emulator: pending_s=30]]")
    # The SDK's 2.0 client, as the platform's worker fetches tasks.
    client = dashscope.Client(api_key=EMULATOR_KEY, base_url=emu.api_base, protocol="native")
    job = client.videos.jobs.fetch(submitted.output.task_id)
    assert job.status == "PENDING" and job.output["video_url"] == ""


def test_inputs_must_have_been_uploaded_for_the_model(fresh_emulator):
    emu = fresh_emulator
    never = "oss://dashscope-instant/nobody/never-uploaded.png"
    refused = _call(ImageSynthesis.async_call, emu, model="wanx2.1-imageedit", prompt="hat",
                    function="description_edit", base_image_url=never)
    assert refused.status_code == 400 and refused.code == "InvalidParameter"
    url = FileUploader(api_key=EMULATOR_KEY, base_url=emu.api_base, timeout=5,
                       session=requests.Session()).upload(
        png(), model="wanx2.1-imageedit", filename="cat.png", content_type="image/png")
    accepted = _call(ImageSynthesis.async_call, emu, model="wanx2.1-imageedit", prompt="hat",
                     function="description_edit", base_image_url=url)
    assert accepted.status_code == 200, accepted  # the SDK added the resolve header itself
    uploaded_for_another = _call(VideoSynthesis.async_call, emu, model="wan2.2-i2v-flash",
                                 prompt="x", img_url=url)
    assert uploaded_for_another.status_code == 400


@pytest.mark.parametrize("kwargs, message", [
    ({"function": "description_edit_with_mask",
      "base_image_url": "https://example.com/a.png"}, "mask_image_url"),
    ({"function": "levitate", "base_image_url": "https://example.com/a.png"}, "function"),
    ({"function": "description_edit"}, "base_image_url"),
])
def test_image_edit_submissions_are_checked(fresh_emulator, kwargs, message):
    refused = _call(ImageSynthesis.async_call, fresh_emulator, model="wanx2.1-imageedit",
                    prompt="hat", **kwargs)
    assert refused.status_code == 400 and message in refused.message


def test_keyframe_models_use_the_image2video_endpoint(fresh_emulator):
    emu = fresh_emulator
    done = _call(VideoSynthesis.async_call, emu, model="wanx2.1-kf2v-plus", prompt="x",
                 first_frame_url="https://example.com/1.png",
                 last_frame_url="https://example.com/2.png")
    assert done.status_code == 200, done
    assert emu.stats()["requests"]["video_submit"] == 1
