"""DashScope's temporary file upload (dashscope-protocol-2.md section 3.4): the policy, the
OSS-style form POST that stores the bytes, and resolving `oss://` URLs in later requests.

The emulator plays OSS too: the policy's `upload_host` points back at it. A policy is only
good for the key prefix (`upload_dir`) it was issued with and for `expire_in_seconds`; an
`oss://` URL resolves only to an object really uploaded, only for the model the policy was
for, and only in a request carrying the resolve header, as DashScope does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import time
import uuid

from emulator.errors import EmulatorError

RESOLVE_HEADER = "X-DashScope-OssResourceResolve"
UPLOAD_PATH = "/_emulator/oss-upload"
POLICY_SECONDS = 300
MAX_FILE_BYTES = 1024 * 1024 * 1024  # the recorded policy's max_file_size_mb: 1024


@dataclasses.dataclass
class Policy:
    upload_dir: str
    model: str
    signature: str
    policy: str
    expires: float


@dataclasses.dataclass
class StoredObject:
    key: str
    model: str
    content_type: str
    data: bytes


class UploadStore:
    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {}  # by signature
        self.objects: dict[str, StoredObject] = {}  # by key

    def issue(self, model: str, api_key: str, upload_host: str) -> dict:
        """A getPolicy answer's `data`: all seven fields the SDK reads, and the limits."""
        account = hashlib.md5(api_key.encode()).hexdigest()  # noqa: S324 - a name, not a MAC
        upload_dir = f"dashscope-instant/{account}/{dt.date.today().isoformat()}/{uuid.uuid4()}"
        policy = Policy(upload_dir=upload_dir, model=model, signature=secrets.token_urlsafe(21),
                        policy=secrets.token_urlsafe(48), expires=time.time() + POLICY_SECONDS)
        self.policies[policy.signature] = policy
        return {"policy": policy.policy, "signature": policy.signature,
                "upload_dir": upload_dir, "upload_host": upload_host,
                "expire_in_seconds": POLICY_SECONDS, "max_file_size_mb": MAX_FILE_BYTES >> 20,
                "capacity_limit_mb": 999999999, "oss_access_key_id": "emulator-access-key",
                "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}

    def store(self, form: dict[str, str], data: bytes, filename_type: str | None) -> None:
        """The form POST: checks what OSS checks (signature, policy, key prefix, expiry)."""
        policy = self.policies.get(form.get("Signature", ""))
        if policy is None or form.get("policy") != policy.policy:
            raise EmulatorError(403, "SignatureDoesNotMatch",
                                "The request signature we calculated does not match.")
        if time.time() > policy.expires:
            raise EmulatorError(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        key = form.get("key", "")
        if not key.startswith(policy.upload_dir + "/") or len(key) == len(policy.upload_dir) + 1:
            raise EmulatorError(403, "AccessDenied",
                                "Invalid according to Policy: Policy Condition failed: key.")
        if key in self.objects and form.get("x-oss-forbid-overwrite") == "true":
            raise EmulatorError(409, "FileAlreadyExists",
                                "The object you specified already exists.")
        if len(data) > MAX_FILE_BYTES:
            raise EmulatorError(400, "EntityTooLarge", "Your proposed upload exceeds the limit.")
        content_type = form.get("x-oss-content-type") or filename_type or \
            "application/octet-stream"
        self.objects[key] = StoredObject(key=key, model=policy.model, content_type=content_type,
                                         data=data)

    def resolve(self, url: str, *, model: str, headers) -> StoredObject:
        """The object an `oss://` URL in a request names; a 400 as DashScope would answer."""
        if headers.get(RESOLVE_HEADER, "").lower() != "enable":
            raise EmulatorError(400, "InvalidParameter",
                                f"The provided URL {url} is not supported without the "
                                f"{RESOLVE_HEADER} header.")
        stored = self.objects.get(url.removeprefix("oss://"))
        if stored is None or stored.model != model:
            raise EmulatorError(400, "InvalidParameter",
                                f"Download the media resource timed out or failed: {url}")
        return stored
