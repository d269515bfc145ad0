"""With IMAGE_STORAGE=s3, images land in an S3-compatible bucket (moto's S3 server here) and
clients get presigned links that keep working after DashScope's URLs die."""

from __future__ import annotations

import boto3
import pytest
import requests

from tests.support import processes
from tests.support.jobs import directive

pytestmark = pytest.mark.usefixtures("platform")
BUCKET = "bailian-test-images"


@pytest.fixture
def s3_endpoint(log_dir, base_env):
    port = processes.free_port()
    server = processes.Process("moto", [str(processes.BIN / "moto_server"), "-p", str(port)],
                               base_env, log_dir).start()
    url = f"http://127.0.0.1:{port}"
    server.wait_for_http(url)
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def test_images_are_stored_in_the_bucket_and_served_by_presigned_links(
        platform, settings, accounts, emulator, s3_endpoint):
    from web.app import create_app

    s3 = {"IMAGE_STORAGE": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": s3_endpoint,
          "S3_REGION": "us-east-1", "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test"}
    platform.worker.stop()  # only a worker writing to S3 may take this job
    s3_worker = processes.worker({**platform.env, **s3}, platform.log_dir, name="worker-s3")
    try:
        from tests.conftest import settings_from_env

        client = create_app(settings_from_env({**platform.env, **s3})).test_client()
        _, headers = accounts.headers()
        response = client.post("/api/bailian/generation", headers=headers, json={
            "model": "wanx-v1", "prompt": f"a kite {directive(duration_s=0)}",
            "parameters": {"n": 1}})
        assert response.status_code == 200, response.json
        image = response.json["data"]["output"]["results"][0]
        assert image["stored"] is True
        assert image["url"].startswith(f"{s3_endpoint}/{BUCKET}/")
        assert "Signature" in image["url"] or "X-Amz-Signature" in image["url"]

        emulator.configure(images_expired=True)
        stored = requests.get(image["url"], timeout=10)
        assert stored.status_code == 200 and stored.content.startswith(b"\x89PNG")
        assert stored.headers["Content-Type"] == "image/png"
        # The API's own image route sends owners to the bucket.
        path = f"/api/jobs/{response.json['data']['job_id']}/images/0"
        redirect = client.get(path, headers=headers)
        assert redirect.status_code == 302 and BUCKET in redirect.headers["Location"]
    finally:
        emulator.configure(images_expired=False)
        s3_worker.stop()
        platform.worker = processes.worker(platform.env, platform.log_dir)
