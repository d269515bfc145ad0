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
