"""DashScope's temporary file upload, as its SDK does it (dashscope-protocol-2.md section 3.4).

Bytes the platform holds (a client's `data:` URL, an uploaded image to edit) reach DashScope
this way, never by DashScope or the platform fetching a client's URL:

1. `GET {base}/uploads?action=getPolicy&model=M` (the API key's) answers a signed OSS policy
   in `data` (not `output`);
2. a multipart form POST of the bytes to the policy's `upload_host`, with no Authorization
   (the policy's signature is the credential); only HTTP 200 is success;
3. the object is then `oss://{upload_dir}/{filename}`, usable for about 48 h by the same
   account and model, in requests that carry `OSS_RESOLVE_HEADER: enable`.

Every failure is an UpstreamError, classified like any other upstream call.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
from http import HTTPStatus
from typing import TYPE_CHECKING

import requests

from common.upstream.failures import UpstreamError, is_retryable_status, retry_after_seconds
from common.upstream.http_session import pooled_session
from common.upstream.instrumentation import upstream_call

if TYPE_CHECKING:  # fc/ imports this module without the platform's settings (fc/requirements)
    from common.infra.settings import Settings

# A request that references an `oss://` object carries this, or DashScope will not resolve it.
OSS_RESOLVE_HEADER = "X-DashScope-OssResourceResolve"
OSS_SCHEME = "oss://"

# The policy fields the form POST needs; DashScope's SDK fails (KeyError) without any of them.
_POLICY_FIELDS = ("policy", "signature", "upload_dir", "upload_host", "oss_access_key_id",
                  "x_oss_object_acl", "x_oss_forbid_overwrite")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass
class FileUploader:
    """Uploads to one DashScope endpoint with one API key, over keep-alive sessions."""

    api_key: str
    base_url: str  # DashScope's HTTP API base, e.g. https://dashscope.aliyuncs.com/api/v1
    timeout: float
    session: requests.Session
    _oss_sessions: dict[str, requests.Session] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, *, session: requests.Session | None = None
                      ) -> FileUploader:
        """The uploader of the platform's DashScope endpoint and key (QWEN_API_KEY)."""
        key = settings.qwen_api_key.get_secret_value() if settings.qwen_api_key else ""
        base_url = settings.dashscope_http_base_url.rstrip("/")
        return cls(api_key=key, base_url=base_url, timeout=settings.upstream_timeout_seconds,
                   session=session or pooled_session(base_url, pool_size=4))

    def upload(self, data: bytes, *, model: str, filename: str, content_type: str) -> str:
        """Upload `data` for `model`; returns its `oss://` URL (send OSS_RESOLVE_HEADER)."""
        with upstream_call(model, "file_upload", billed=False):
            policy = self._policy(model)
            key = f"{policy['upload_dir']}/{safe_filename(filename)}"
            form = {
                "OSSAccessKeyId": policy["oss_access_key_id"],
                "Signature": policy["signature"],
                "policy": policy["policy"],
                "key": key,
                "x-oss-object-acl": policy["x_oss_object_acl"],
                "x-oss-forbid-overwrite": policy["x_oss_forbid_overwrite"],
                "success_action_status": "200",
                "x-oss-content-type": content_type,
            }
            host = policy["upload_host"]
            response = self._send(
                self._oss_session(host).post, host, data=form,
                files={"file": (safe_filename(filename), data, content_type)},
                headers={"Accept": "application/json",
                         "Date": email.utils.formatdate(usegmt=True)})
            if response.status_code != HTTPStatus.OK:
                raise _status_error(response, "Temporary file upload failed")
        return OSS_SCHEME + key

    def _policy(self, model: str) -> dict[str, str]:
        response = self._send(
            self.session.get, f"{self.base_url}/uploads",
            params={"action": "getPolicy", "model": model},
            headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"})
        if response.status_code != HTTPStatus.OK:
            raise _status_error(response, "Upload policy request failed")
        try:
            policy = response.json()["data"]
            return {name: str(policy[name]) for name in _POLICY_FIELDS}
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(code="UpstreamMalformedResponse", status=HTTPStatus.OK,
                                retryable=True, message=f"Upload policy lacks {exc}") from exc

    def _oss_session(self, host: str) -> requests.Session:
        # The upload host is OSS, not DashScope: its own keep-alive pool and proxy settings.
        if host not in self._oss_sessions:
            self._oss_sessions[host] = pooled_session(host, pool_size=4)
        return self._oss_sessions[host]

    def _send(self, method, url: str, **kwargs) -> requests.Response:
        try:
            return method(url, timeout=self.timeout, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise UpstreamError(code="UpstreamTimeout", status=None, retryable=True,
                                message=f"File upload did not answer within {self.timeout:g}s"
                                ) from exc
        except requests.exceptions.RequestException as exc:
            raise UpstreamError(code="UpstreamConnectionError", status=None, retryable=True,
                                message=f"File upload connection failed: {type(exc).__name__}"
                                ) from exc


def safe_filename(filename: str) -> str:
    """The object's name: a basename of safe characters (it becomes part of the OSS key)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE_NAME.sub("_", base).strip("._") or "file"


def _status_error(response: requests.Response, what: str) -> UpstreamError:
    code, message = f"HTTP{response.status_code}", response.text[:500]
    try:
        body = response.json()
        code, message = body.get("code") or code, body.get("message") or message
    except (ValueError, AttributeError):
        pass  # OSS answers XML errors; keep the text
    return UpstreamError(code=code, message=f"{what}: {message}", status=response.status_code,
                         retryable=is_retryable_status(response.status_code),
                         retry_after=retry_after_seconds(response.headers))
