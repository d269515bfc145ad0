"""A chat attempt that reads DashScope's stream: each delta goes to the job's event stream as
it arrives (when the client streams), and the result and usage row are committed at the end
in one transaction, exactly as for an attempt that did not stream.

What a stream's interruptions do:
- it fails before its first delta: the retry policy decides, as for any attempt;
- it fails after: the client already holds part of the answer, so a retry would stream it
  twice; the job fails with upstream's code, and the usage DashScope reported so far is
  recorded;
- a cancel (or the deadline) ends the job meanwhile: the worker stops reading within one
  delta, and records the usage DashScope reported until then (our estimate, flagged, if it
  reported none);
- the worker dies: the next attempt finds the deltas an earlier one published and fails the
  job (`StreamInterrupted`) with the last usage DashScope reported, flagged as an estimate
  (DashScope may have generated more before it noticed), instead of streaming again.
- Redis fails: publishing stops for this attempt, the job still completes, and the web tier
  ends its readers' streams from the job row.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING

import redis

from common.billing.pricing import Usage
from common.jobs import streams as job_streams
from common.jobs.lifecycle import Claim
from common.upstream.dashscope_messages import text_of
from common.upstream.failures import UpstreamError
from common.upstream.interface import AIBackend, ChatDelta, ChatRequest, ChatResult

if TYPE_CHECKING:
    from common.jobs.chat import ChatJobs

logger = logging.getLogger(__name__)

STREAM_INTERRUPTED = "StreamInterrupted"
# How often a streaming attempt that publishes nothing asks whether its job was canceled (one
# Redis read); one that publishes learns it from each append.
CANCEL_CHECK_SECONDS = 0.25


class StreamingAttempts:
    def __init__(self, jobs: ChatJobs) -> None:
        self.jobs = jobs

    def run(self, claim: Claim, request: ChatRequest, backend: AIBackend) -> None:
        lifecycle = self.jobs.lifecycle
        streams = lifecycle.streams
        if claim.streams and claim.attempt > 1:
            earlier = _last_delta(streams, claim.id)
            if earlier is not None:
                self._interrupted(claim, request, earlier)
                return
        relay = Relay(streams, claim, publish=claim.streams)
        try:
            answer = backend.chat_stream(request, relay.on_delta)
        except UpstreamError as error:
            if not relay.deltas:
                lifecycle.upstream_failed(claim, error, retry_task=claim.first_task)
                return
            logger.warning("chat stream failed after %s deltas code=%s message=%s",
                           relay.deltas, error.code, error.message)
            lifecycle.fail(claim, code=error.code, message=error.message,
                           add_compute_cost=error.compute_cost,
                           billed=self._partial(claim, request, relay.usage, estimated=False))
            return
        if answer.stopped:
            logger.info("chat stream stopped after %s deltas: the job ended", relay.deltas)
            usage = answer.usage if relay.reported else estimate(request, answer)
            answer = dataclasses.replace(answer, usage=usage)
        logger.info("chat stream ok attempt=%s deltas=%s input_tokens=%s output_tokens=%s",
                    claim.attempt, relay.deltas, answer.usage.input_tokens,
                    answer.usage.output_tokens)
        # For a job that ended meanwhile, this writes only the usage row (lifecycle.finish).
        self.jobs.record(claim, self.jobs.billed(claim, answer))

    def _interrupted(self, claim: Claim, request: ChatRequest,
                     earlier: job_streams.Entry) -> None:
        logger.warning("chat stream of an earlier attempt was interrupted; failing the job")
        usage = earlier.usage or Usage()
        if not usage.total_tokens:
            usage = estimate(request, None)
        self.jobs.lifecycle.fail(
            claim, code=STREAM_INTERRUPTED,
            message="The worker streaming this job was lost mid-stream; the answer is "
                    "incomplete. Submit the request again.",
            billed=self._partial(claim, request, dataclasses.replace(usage, estimated=True),
                                 estimated=True))

    def _partial(self, claim: Claim, request: ChatRequest, usage: Usage, *,
                 estimated: bool):
        """What DashScope billed for a stream that broke off (a failed job's usage row)."""
        if not usage.total_tokens:
            usage = estimate(request, None)
        elif estimated:
            usage = dataclasses.replace(usage, estimated=True)
        return self.jobs.billed(claim, ChatResult(
            message={"role": "assistant", "content": ""}, finish_reason="stop", usage=usage))


class Relay:
    """Publishes one attempt's deltas as chat.completion.chunk events, and learns whether the
    job was canceled (False from `on_delta` stops the upstream read)."""

    def __init__(self, streams: job_streams.JobStreams, claim: Claim, *, publish: bool) -> None:
        self.streams = streams
        self.claim = claim
        self.publish = publish
        self.created = int(claim.created_at.timestamp())
        self.deltas = 0
        self.offset = (0, 0, 0)  # characters of content, reasoning, tool calls published
        self.usage = Usage()
        self.reported = False  # DashScope reported usage with some delta
        self._next_check = time.monotonic() + CANCEL_CHECK_SECONDS

    def on_delta(self, delta: ChatDelta) -> bool:
        if delta.usage.total_tokens:
            self.usage, self.reported = delta.usage, True
        canceled = self._publish(delta) if self.publish else None
        self.deltas += 1
        if canceled is not None:
            return not canceled  # the append answered it
        now = time.monotonic()
        if now < self._next_check:
            return True
        self._next_check = now + CANCEL_CHECK_SECONDS
        try:
            return not self.streams.cancel_requested(self.claim.id)
        except redis.RedisError:
            return True  # the job row is checked at the end: a cancel still hides the result

    def _publish(self, delta: ChatDelta) -> bool | None:
        """Append the delta; whether the job was canceled (None: not published)."""
        body: dict = {}
        if not self.deltas:
            body["role"] = "assistant"
        if delta.content or not self.deltas:
            body["content"] = delta.content
        if delta.reasoning_content:
            body["reasoning_content"] = delta.reasoning_content
        if delta.tool_calls:
            body["tool_calls"] = list(delta.tool_calls)
        chunk = job_streams.chunk(job_id=self.claim.id, model=self.claim.model,
                                  created=self.created, delta=body,
                                  finish_reason=delta.finish_reason)
        offset = self.offset
        self.offset = (offset[0] + len(delta.content), offset[1] + len(delta.reasoning_content),
                       offset[2] + job_streams.tool_call_chars(delta.tool_calls))
        try:
            return self.streams.append(self.claim.id, chunk, self.usage, offset,
                                       first=not self.deltas)
        except redis.RedisError as exc:
            # The job goes on; readers end their streams from the job row.
            logger.warning("stream events lost (%s); the job continues unpublished", exc)
            self.publish = False
            return None


def _last_delta(streams: job_streams.JobStreams, job_id: str) -> job_streams.Entry | None:
    try:
        return streams.last_delta(job_id)
    except redis.RedisError:
        # Unknown: failing the job would be a guess; streaming again at worst repeats text a
        # reader already has, which the end of its stream corrects from the row.
        return None


def estimate(request: ChatRequest, answer: ChatResult | None) -> Usage:
    """Our estimate of the tokens of a stream DashScope reported no usage for: about four
    characters of ASCII per token, one per other character (CJK text is about one per
    character). Flagged `estimated` on the usage row."""
    prompt = "".join(text_of(m.get("content")) for m in request.messages)
    output = "" if answer is None else (answer.message.get("content", "")
                                        + answer.message.get("reasoning_content", ""))
    input_tokens, output_tokens = max(1, _tokens(prompt)), _tokens(output)
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                 total_tokens=input_tokens + output_tokens, estimated=True)


def _tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ch.isascii())
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)
