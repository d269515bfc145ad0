"""The emulator speaks DashScope's wire format: the real `dashscope` SDK (1.x API and the 2.0
Client) parses every response it produces, errors included. No SDK code is patched."""

from __future__ import annotations

import time

import dashscope
import pytest
import requests
from dashscope import Generation, ImageSynthesis
from dashscope.v2 import errors as v2_errors

from tests.support.jobs import directive, wait_until
from tests.support.stack import EMULATOR_KEY

MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]


def call(emu, **kwargs):
    kwargs.setdefault("model", "qwen-plus")
    kwargs.setdefault("api_key", EMULATOR_KEY)
    return Generation.call(base_address=emu.api_base, **kwargs)


# --- native text generation ----------------------------------------------------------------

def test_message_format_parses_with_usage(emu):
    response = call(emu, messages=MESSAGES, result_format="message")
    assert response.status_code == 200 and response.code == ""
    message = response.output.choices[0].message
    assert (message.role, message.content) == ("assistant", "Echo: Tell me about the sea")
    assert response.output.choices[0].finish_reason == "stop"
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens > 0
    assert response.request_id


def test_text_format_and_prompt_input(emu):
    response = call(emu, prompt="Hi there")
    assert response.output.text == "Echo: Hi there"
    assert response.output.finish_reason == "stop"


def test_max_tokens_cuts_the_reply_with_finish_reason_length(emu):
    response = call(emu, messages=MESSAGES, result_format="message", max_tokens=2)
    assert response.output.choices[0].finish_reason == "length"
    assert response.usage.output_tokens == 2


@pytest.mark.parametrize("incremental", [True, False])
def test_streaming_with_cumulative_usage(emu, incremental):
    chunks = list(call(emu, messages=MESSAGES, result_format="message", stream=True,
                       incremental_output=incremental))
    assert all(c.status_code == 200 for c in chunks)
    texts = [c.output.choices[0].message.content for c in chunks]
    full = "".join(texts) if incremental else texts[-1]
    assert full == "Echo: Tell me about the sea"
    usage = [c.usage.output_tokens for c in chunks]
    # Cumulative, never summed; the extra final chunk repeats the total (protocol-2 §1.3).
    assert usage == sorted(usage) and usage[-1] == usage[-2] == len(chunks) - 1
    assert chunks[-1].output.choices[0].finish_reason == "stop"


def test_streaming_text_format(emu):
    chunks = list(call(emu, prompt="Stream me", stream=True, incremental_output=True))
    assert "".join(c.output.text for c in chunks) == "Echo: Stream me"


def test_stream_error_midway_arrives_as_an_error_item(emu):
    chunks = list(call(emu, prompt=f"x {directive(fault='stream-error')}", stream=True,
                       incremental_output=True))
    assert chunks[0].status_code == 200
    assert (chunks[-1].status_code, chunks[-1].code) == (400, "InternalError")
    with_status = list(call(emu, prompt=f"x {directive(fault='stream-error', status=503)}",
                            stream=True, incremental_output=True))
    assert with_status[-1].status_code == 503


def test_error_before_a_stream_is_a_single_item(emu):
    [only] = list(call(emu, prompt="x", stream=True, api_key="sk-wrong"))
    assert (only.status_code, only.code) == (401, "InvalidApiKey")


@pytest.mark.parametrize("kwargs, status, code", [
    ({"api_key": "sk-wrong"}, 401, "InvalidApiKey"),
    ({"model": "qwen-plus", "messages": [{"role": "user", "content": ""}]}, 400,
     "InvalidParameter"),
    ({"temperature": 2.0}, 400, "InvalidParameter"),
    ({"top_p": 0}, 400, "InvalidParameter"),
    ({"max_tokens": 100000}, 400, "InvalidParameter"),
    ({"model": "gpt-4"}, 404, "ModelNotFound"),
])
def test_validation_errors_match_the_service(emu, kwargs, status, code):
    kwargs.setdefault("messages", MESSAGES)
    response = call(emu, **kwargs)
    assert (response.status_code, response.code) == (status, code)
    assert response.message and response.output is None


@pytest.mark.parametrize("fault, status, code", [
    ("400", 400, "InvalidParameter"), ("401", 401, "InvalidApiKey"),
    ("403", 403, "AccessDenied"), ("inspection", 400, "DataInspectionFailed"),
    ("429", 429, "Throttling.RateQuota"), ("500", 500, "InternalError"),
    ("503", 503, "ModelUnavailable")])
def test_injected_faults_parse_in_the_sdk(emu, fault, status, code):
    response = call(emu, prompt=f"x {directive(fault=fault)}")
    assert (response.status_code, response.code) == (status, code)


def test_429_with_and_without_retry_after(emu):
    with_header = call(emu, prompt=f"x {directive(fault=429, retry_after=7)}")
    assert with_header.headers["Retry-After"] == "7"
    without = call(emu, prompt=f"x {directive(fault=429)}")
    assert "Retry-After" not in without.headers


def test_fault_times_limits_how_often_it_fires(emu):
    marker = directive(fault=500, times=2)
    statuses = [call(emu, prompt=f"x {marker}").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert emu.calls_with(marker.id) == 3


def test_header_knob_works_without_touching_the_prompt(emu):
    response = call(emu, prompt="plain", headers={"X-Emulator": "fault=503"})
    assert response.status_code == 503


def test_malformed_success_makes_the_sdk_raise(emu):
    with pytest.raises(TypeError):
        call(emu, prompt=f"x {directive(fault='malformed')}")


def test_connection_reset_surfaces_as_a_connection_error(emu):
    with pytest.raises(requests.exceptions.ConnectionError):
        call(emu, prompt=f"x {directive(fault='reset')}")


def test_hang_runs_past_the_client_timeout(emu):
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        call(emu, prompt=f"x {directive(fault='hang')}", request_timeout=1)
    assert time.monotonic() - started < 5


def test_latency_knobs_per_request_and_per_server(emu):
    started = time.monotonic()
    call(emu, prompt=f"x {directive(latency_ms=300)}")
    assert time.monotonic() - started >= 0.3
    emu.configure(latency_ms=200, jitter_ms=50)
    started = time.monotonic()
    call(emu, prompt="x")
    assert 0.2 <= time.monotonic() - started < 2


def test_server_rate_limit_answers_429(emu):
    emu.configure(rate_limit_rps=2, rate_limit_retry_after=1)
    statuses = [call(emu, prompt="x").status_code for _ in range(3)]
    assert statuses[:2] == [200, 200] and statuses[2] == 429


def test_random_fault_rates(emu):
    emu.configure(fault_rates={"503": 1.0})
    assert call(emu, prompt="x").status_code == 503


def test_counts_what_it_received(emu):
    for _ in range(3):
        call(emu, prompt="x")
    assert emu.stats()["requests"]["generation"] == 3


# --- compatible mode (2.0 Client) ---------------------------------------------------------

def compatible_client(emu, key=EMULATOR_KEY):
    return dashscope.Client(api_key=key, base_url=f"{emu.base}/compatible-mode/v1",
                            protocol="openai", max_retries=0)


def test_compatible_mode_chat(emu):
    completion = compatible_client(emu).chat.completions.create(model="qwen-plus",
                                                                messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo: Tell me about the sea"
    # The 2.0 Client normalises OpenAI's prompt/completion tokens to input/output.
    assert completion.usage.total_tokens == (completion.usage.input_tokens
                                             + completion.usage.output_tokens) > 0


def test_compatible_mode_stream_ends_with_usage(emu):
    stream = compatible_client(emu).chat.completions.create(model="qwen-plus",
                                                            messages=MESSAGES, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Tell me about the sea"
    assert chunks[-1].usage.total_tokens > 0


def test_compatible_mode_errors(emu):
    with pytest.raises(v2_errors.AuthenticationError):
        compatible_client(emu, key="sk-wrong").chat.completions.create(model="qwen-plus",
                                                                       messages=MESSAGES)


def test_native_protocol_through_the_2_0_client(emu):
    client = dashscope.Client(api_key=EMULATOR_KEY, base_url=emu.api_base, protocol="native",
                              max_retries=0)
    completion = client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo: Tell me about the sea"
    streamed = list(client.chat.completions.create(model="qwen-plus", messages=MESSAGES,
                                                   stream=True))
    assert streamed


# --- Wanx image tasks -----------------------------------------------------------------------

def submit(emu, prompt="a cat", **kwargs):
    kwargs.setdefault("model", "wanx-v1")
    return ImageSynthesis.async_call(prompt=prompt, api_key=EMULATOR_KEY,
                                     base_address=emu.api_base, **kwargs)


def fetch(emu, task):
    return ImageSynthesis.fetch(task, api_key=EMULATOR_KEY)


def test_image_task_runs_to_success(emu):
    emu.configure(image_duration_s=0.5)
    task = submit(emu, n=2, size="1024*1024", style="<watercolor>", seed=42,
                  negative_prompt="dogs")
    assert task.status_code == 200 and task.output.task_status == "PENDING"
    running = fetch(emu, task)
    assert running.output.task_status == "RUNNING"
    done = ImageSynthesis.wait(task, api_key=EMULATOR_KEY, base_address=emu.api_base)
    assert done.output.task_status == "SUCCEEDED"
    assert len(done.output.results) == 2 and done.usage.image_count == 2
    png = requests.get(done.output.results[0].url, timeout=5)
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")


def test_partial_failure_keeps_per_image_errors_and_bills_successes(emu):
    task = submit(emu, f"cats {directive(outcome='partial', duration_s=0)}", n=4)
    result = fetch(emu, task)
    assert result.output.task_status == "SUCCEEDED"
    urls = [r.url for r in result.output.results if r.url]
    errors = [r for r in result.output.results if not r.url]
    assert len(urls) == 2 and len(errors) == 2 and errors[0].code == "InternalError.Timeout"
    assert result.usage.image_count == 2
    assert result.output.task_metrics == {"TOTAL": 4, "SUCCEEDED": 2, "FAILED": 2}


@pytest.mark.parametrize("outcome, status", [("failed", "FAILED"), ("unknown", "UNKNOWN"),
                                             ("canceled", "CANCELED")])
def test_other_outcomes(emu, outcome, status):
    task = submit(emu, f"x {directive(outcome=outcome, duration_s=0)}", n=1)
    result = fetch(emu, task)
    assert result.status_code == 200 and result.output.task_status == status
    if status == "FAILED":
        assert result.output.code == "InternalError" and result.output.message


def test_unknown_task_id_is_200_unknown(emu):
    result = ImageSynthesis.fetch("no-such-task", api_key=EMULATOR_KEY)
    assert result.status_code == 200 and result.output.task_status == "UNKNOWN"


def test_expired_tasks_read_unknown_and_urls_die(emu):
    emu.configure(image_duration_s=0)
    task = submit(emu, n=1)
    url = fetch(emu, task).output.results[0].url
    emu.configure(images_expired=True)
    assert requests.get(url, timeout=5).status_code == 403
    emu.configure(task_ttl_s=0)
    assert fetch(emu, task).output.task_status == "UNKNOWN"


def test_cancel_only_while_pending(emu):
    pending = submit(emu, f"x {directive(pending_s=30)}", n=1)
    canceled = ImageSynthesis.cancel(pending, api_key=EMULATOR_KEY)
    assert canceled.status_code == 200
    assert fetch(emu, pending).output.task_status == "CANCELED"
    emu.configure(image_duration_s=30)
    running = submit(emu, n=1)
    fetch(emu, running)
    refused = ImageSynthesis.cancel(running, api_key=EMULATOR_KEY)
    assert (refused.status_code, refused.code) == (400, "UnsupportedOperation")


def test_concurrency_limit_keeps_later_tasks_pending(emu):
    emu.configure(image_concurrency=1, image_duration_s=0.6)
    first, second = submit(emu, n=1), submit(emu, n=1)
    assert fetch(emu, first).output.task_status == "RUNNING"
    assert fetch(emu, second).output.task_status == "PENDING"
    wait_until(lambda: fetch(emu, second).output.task_status == "SUCCEEDED", timeout=10)


def test_task_list(emu):
    submit(emu, n=1)
    listing = ImageSynthesis.list(api_key=EMULATOR_KEY, page_size=5)
    assert listing.status_code == 200
    assert listing.output["total"] >= 1
    assert {"task_id", "status", "model_name"} <= set(listing.output["data"][0])


@pytest.mark.parametrize("kwargs, code", [
    ({"size": "999*999"}, "InvalidParameter"), ({"n": 5}, "InvalidParameter"),
    ({"style": "<cubism>"}, "InvalidParameter"), ({"model": "wanx-v9"}, "ModelNotFound")])
def test_image_validation(emu, kwargs, code):
    response = submit(emu, **kwargs)
    assert response.code == code


def test_synchronous_image_call_is_refused(emu):
    response = requests.post(f"{emu.api_base}/services/aigc/text2image/image-synthesis",
                             json={"model": "wanx-v1", "input": {"prompt": "a cat"}},
                             headers={"Authorization": f"Bearer {EMULATOR_KEY}"}, timeout=5)
    assert response.status_code == 403 and response.json()["code"] == "AccessDenied"


def test_submit_rate_limit(emu):
    emu.configure(image_submit_qps=2)
    codes = [submit(emu, n=1).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert emu.stats()["requests"]["image_submit"] == 3


def test_task_queries_are_counted_per_second(emu):
    task = submit(emu, n=1)
    for _ in range(5):
        fetch(emu, task)
    stats = emu.stats()
    assert stats["requests"]["task_get"] == 5
    assert sum(stats["task_queries_per_second"].values()) == 5
    assert 1 <= stats["max_task_queries_per_second"] <= 5
