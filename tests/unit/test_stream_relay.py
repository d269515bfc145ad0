"""What a stream relay knows the client has: the basis of ending a stream from the job row."""

from __future__ import annotations

from common.billing.pricing import Usage
from common.jobs.streaming import estimate
from common.jobs.streams import Entry, chunk
from common.upstream.interface import ChatRequest
from web.streaming import Relayed


def _entry(n: int, content: str, offset: tuple[int, int, int], **delta) -> Entry:
    return Entry(f"{n}-0", chunk=chunk(job_id="j", model="m", created=0,
                                       delta={"content": content, **delta}, finish_reason=None),
                 usage=Usage(), offset=offset)


def test_consecutive_chunks_are_complete_and_a_gap_is_noticed():
    sent = Relayed()
    sent.note(_entry(1, "Hel", (0, 0, 0), role="assistant"))
    sent.note(_entry(2, "lo", (3, 0, 0)))
    assert (sent.content, sent.complete, sent.role) == (5, True, True)
    sent.note(_entry(4, "!", (9, 0, 0)))  # entry 3 was lost
    assert (sent.content, sent.complete) == (10, False)


def test_a_resumed_client_has_everything_up_to_its_last_event():
    sent = Relayed.resumed(_entry(2, "lo", (3, 0, 0)))
    assert (sent.content, sent.complete, sent.role) == (5, True, True)
    gone = Relayed.resumed(None)
    assert not gone.complete


def test_an_estimate_is_flagged_and_never_zero():
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "你好 hello"}],
                          parameters={})
    usage = estimate(request, None)
    assert usage.estimated and usage.input_tokens == 2 + 2 and usage.output_tokens == 0
    assert usage.total_tokens == usage.input_tokens


def test_a_stream_that_published_no_tool_call_ends_with_all_of_them_from_the_row():
    import datetime as dt
    import json
    from decimal import Decimal

    from common.jobs.models import JobKind, JobStatus
    from common.jobs.results import ChatCompletion
    from common.jobs.views import JobUsage, JobView
    from common.upstream.interface import ChatResult
    from web.streaming import _rest

    calls = [{"id": "call_1", "type": "function",
              "function": {"name": "f", "arguments": '{"a": 1}'}}]
    answer = ChatResult(message={"role": "assistant", "content": "", "tool_calls": calls},
                        finish_reason="tool_calls", usage=Usage(input_tokens=3,
                                                                output_tokens=2,
                                                                total_tokens=5,
                                                                image_tokens=1))
    now = dt.datetime(2026, 12, 1)
    view = JobView(id="j", user_id=1, kind=JobKind.CHAT, model="m", status=JobStatus.SUCCEEDED,
                   created_at=now, deadline_at=now,
                   result=ChatCompletion.of(job_id="j", model="m", answer=answer),
                   usage=JobUsage(input_tokens=3, output_tokens=2, total_tokens=5,
                                  image_tokens=1, cost=Decimal(0), currency="CNY"))
    ending, usage = (json.loads(data) for data in _rest(view, view.result, Relayed(), True))
    assert ending["choices"][0]["delta"]["tool_calls"] == [{"index": 0, **calls[0]}]
    assert ending["choices"][0]["finish_reason"] == "tool_calls"
    assert usage["usage"]["prompt_tokens_details"] == {"image_tokens": 1}
    # A client that had the calls streamed gets only the finish.
    streamed = Relayed(tools=len('f{"a": 1}'), role=True, finished=True)
    assert list(_rest(view, view.result, streamed, False)) == []
