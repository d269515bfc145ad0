"""The current Wan text-to-image models (wan2.2, wan2.5), each with its own rules from
IMAGE_MODELS: for every rule one request the platform refuses (400, nothing queued) and one it
accepts, which a real worker runs against the emulator (which checks the same rules, as
DashScope does) to success."""

from __future__ import annotations

import pytest

from common.jobs.models import JobStatus
from tests.support.jobs import directive, wait_for_job

pytestmark = pytest.mark.usefixtures("platform")
URL = "/api/bailian/generation"
WAN22 = ("wan2.2-t2i-flash", "wan2.2-t2i-plus")


def gen(model: str, prompt: str = "a harbour", **parameters) -> dict:
    return {"model": model, "prompt": f"{prompt} {directive(duration_s=0)}",
            "parameters": parameters}


# (rule, refused request, accepted request) per model
RULES = [
    *[(f"{m} size per side", gen(m, size="1500*1024"), gen(m, size="1440*512")) for m in WAN22],
    *[(f"{m} n", gen(m, n=5), gen(m, n=4)) for m in WAN22],
    *[(f"{m} prompt length", gen(m, "x" * 801), gen(m, "x" * 700)) for m in WAN22],
    *[(f"{m} style", gen(m, style="<anime>"), gen(m, prompt_extend=True, watermark=True))
      for m in WAN22],
    *[(f"{m} seed", gen(m, seed=2**31), gen(m, seed=2**31 - 1)) for m in WAN22],
    *[(f"{m} negative_prompt", gen(m, negative_prompt="n" * 501),
       gen(m, negative_prompt="n" * 500)) for m in WAN22],
    ("wan2.5 total pixels", gen("wan2.5-t2i-preview", size="512*512"),
     gen("wan2.5-t2i-preview", size="768*2700")),  # sides past 1440 are fine on wan2.5
    ("wan2.5 aspect ratio", gen("wan2.5-t2i-preview", size="640*2800"),
     gen("wan2.5-t2i-preview", size="1440*1440")),
    ("wan2.5 prompt length", gen("wan2.5-t2i-preview", "x" * 2001),
     gen("wan2.5-t2i-preview", "x" * 1900)),
]


def test_each_rule_refuses_one_request_and_accepts_another(client, accounts, database):
    _, headers = accounts.headers()
    accepted = {}
    for rule, refused, valid in RULES:
        response = client.post(URL, headers=headers, json=refused)
        assert response.status_code == 400, (rule, response.json)
        response = client.post(URL, headers={**headers, "Prefer": "respond-async"},
                               json=valid)
        assert response.status_code == 202, (rule, response.json)
        accepted[rule] = response.json["data"]["id"]
    for rule, job_id in accepted.items():
        job = wait_for_job(database, job_id, timeout=60)
        assert job.status == JobStatus.SUCCEEDED, (rule, job.error_code, job.error_message)
