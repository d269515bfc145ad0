"""The temporary file upload as the real `dashscope` SDK does it (dashscope-protocol-2.md
§3.4): getPolicy, the OSS-style form POST, and the `oss://` URL it returns; plus the
platform's own uploader (common/upstream/file_upload.py) against the same emulator."""

from __future__ import annotations

import hashlib

import dashscope
import pytest
import requests
from dashscope.common.error import UploadFileException
from dashscope.utils.oss_utils import OssUtils

from common.upstream.failures import UpstreamError
from common.upstream.file_upload import FileUploader
from emulator.errors import EmulatorError
from emulator.uploads import RESOLVE_HEADER, UploadStore
from tests.support.stack import EMULATOR_KEY

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100


@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    # The SDK's getPolicy (a GetMixin call) reads its host from this documented attribute.
    monkeypatch.setattr(dashscope, "base_http_api_url", fresh_emulator.api_base)
    return fresh_emulator


def stored(emu) -> dict[str, dict]:
    objects = requests.get(f"{emu.base}/_emulator/uploads", timeout=5).json()["objects"]
    return {o["key"]: o for o in objects}


def uploader(emu, key: str = EMULATOR_KEY) -> FileUploader:
    return FileUploader(api_key=key, base_url=emu.api_base, timeout=5,
                        session=requests.Session())


def test_the_sdk_uploads_a_local_file_and_gets_an_oss_url(emu, tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    url, certificate = OssUtils.upload(model="qwen-vl-max", file_path=str(path),
                                       api_key=EMULATOR_KEY)
    assert url.startswith("oss://dashscope-instant/") and url.endswith("/cat.png")
    assert certificate["upload_host"] == f"{emu.base}/_emulator/oss-upload"
    obj = stored(emu)[url.removeprefix("oss://")]
    assert obj["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert (obj["model"], obj["content_type"]) == ("qwen-vl-max", "image/png")


def test_a_wrong_key_gets_no_policy(emu, tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    with pytest.raises(UploadFileException, match="InvalidApiKey"):
        OssUtils.upload(model="qwen-vl-max", file_path=str(path), api_key="sk-wrong")
    assert stored(emu) == {}


def test_a_forged_signature_or_a_foreign_key_prefix_is_refused_like_oss(emu):
    policy = requests.get(f"{emu.api_base}/uploads", timeout=5,
                          params={"action": "getPolicy", "model": "qwen-vl-max"},
                          headers={"Authorization": f"Bearer {EMULATOR_KEY}"}).json()["data"]
    form = {"OSSAccessKeyId": policy["oss_access_key_id"], "Signature": policy["signature"],
            "policy": policy["policy"], "key": policy["upload_dir"] + "/a.png",
            "success_action_status": "200"}
    files = {"file": ("a.png", PNG, "image/png")}
    forged = requests.post(policy["upload_host"], data={**form, "Signature": "forged"},
                           files=files, timeout=5)
    assert forged.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in forged.text
    elsewhere = requests.post(policy["upload_host"], data={**form, "key": "other/a.png"},
                              files=files, timeout=5)
    assert elsewhere.status_code == 403
    assert stored(emu) == {}
    assert requests.post(policy["upload_host"], data=form, files=files,
                         timeout=5).status_code == 200
    assert list(stored(emu)) == [policy["upload_dir"] + "/a.png"]


def test_the_platform_uploader_stores_the_bytes_under_a_safe_name(emu):
    url = uploader(emu).upload(PNG, model="qwen-vl-plus", filename="../../my image.png",
                               content_type="image/png")
    assert url.startswith("oss://dashscope-instant/") and url.endswith("/my_image.png")
    obj = stored(emu)[url.removeprefix("oss://")]
    assert obj["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert (obj["model"], obj["content_type"], obj["size"]) == ("qwen-vl-plus", "image/png",
                                                                len(PNG))


def test_the_platform_uploader_classifies_a_refused_policy(emu):
    with pytest.raises(UpstreamError) as refused:
        uploader(emu, key="sk-wrong").upload(PNG, model="qwen-vl-plus", filename="a.png",
                                             content_type="image/png")
    assert (refused.value.code, refused.value.status) == ("InvalidApiKey", 401)
    assert not refused.value.retryable


def test_the_platform_uploader_reports_an_unreachable_upstream():
    down = FileUploader(api_key="k", base_url="http://127.0.0.1:9/api/v1", timeout=2,
                        session=requests.Session())
    with pytest.raises(UpstreamError) as failed:
        down.upload(PNG, model="qwen-vl-plus", filename="a.png", content_type="image/png")
    assert failed.value.code == "UpstreamConnectionError" and failed.value.retryable


def test_an_oss_url_resolves_only_when_uploaded_for_that_model_with_the_header():
    store = UploadStore()
    policy = store.issue("qwen-vl-max", "sk", "http://oss")
    key = policy["upload_dir"] + "/a.png"
    store.store({"Signature": policy["signature"], "policy": policy["policy"], "key": key},
                PNG, "image/png")
    header = {RESOLVE_HEADER: "enable"}
    assert store.resolve("oss://" + key, model="qwen-vl-max", headers=header).data == PNG
    for url, model, headers in (("oss://" + key, "qwen-vl-max", {}),
                                ("oss://" + key, "qwen-vl-plus", header),
                                ("oss://" + policy["upload_dir"] + "/never.png", "qwen-vl-max",
                                 header)):
        with pytest.raises(EmulatorError) as refused:
            store.resolve(url, model=model, headers=headers)
        assert (refused.value.status, refused.value.code) == (400, "InvalidParameter")
