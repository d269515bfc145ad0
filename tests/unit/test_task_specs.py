"""What differs per kind of async task lives in its spec: the upstream request, the result and
its billed usage, and what may be copied."""

from __future__ import annotations

from common.jobs.models import JobKind
from common.jobs.results import VideoResult
from common.jobs.task_specs import IMAGE_EDIT, VIDEO, spec_of
from common.upstream.interface import UpstreamTask


def test_a_video_is_billed_by_its_seconds_and_copied_with_its_poster():
    task = UpstreamTask(task_id="t", status="SUCCEEDED", video_url="https://x/v.mp4",
                        poster_url="https://x/p.png", video_seconds=10, video_count=1)
    result, usage = VIDEO.outcome(task)
    assert isinstance(result, VideoResult)
    assert (usage.video_seconds, usage.video_count, usage.image_count) == (10, 1, 0)
    assert [index for index, _ in result.copies] == [0, 1]
    assert VIDEO.content_type_allowed(0, "video/mp4") and not VIDEO.content_type_allowed(
        0, "text/html")
    assert VIDEO.content_type_allowed(1, "image/png")


def test_a_video_that_succeeded_without_its_url_has_no_outcome():
    assert VIDEO.outcome(UpstreamTask(task_id="t", status="SUCCEEDED")) is None


def test_an_edit_sends_its_function_and_resolved_images_as_input():
    request = IMAGE_EDIT.upstream_request(
        model="wanx2.1-imageedit", request={
            "prompt": "hat", "negative_prompt": None, "parameters": {"n": 1},
            "fields": {"function": "description_edit"},
            "images": {"base_image_url": {"file_id": "f"}}},
        inputs={"base_image_url": "oss://dir/f.png"}, correlation_id=None, user_id=1)
    assert request.inputs == {"function": "description_edit",
                              "base_image_url": "oss://dir/f.png"}
    assert not request.video and spec_of(JobKind.VIDEO).video
