"""A streamed job relayed to its client as server-sent events, OpenAI's way: `data:` lines of
chat.completion.chunk objects, then `data: [DONE]`.

The worker writes the job's deltas to its Redis Stream (common/jobs/streams.py); any web
process relays them, each with its entry id as the SSE `id`, so a client that reconnects with
`Last-Event-ID` gets every remaining chunk exactly once. The end comes from the job as its
ending committed it: carried by the published end (common/jobs/streams.py), or read from the
row when the end was read from the stream instead. So the usage chunk (`include_usage`) is the
usage row, and a job that failed or was canceled ends with OpenAI's error object, which the
SDKs raise. If the stream's events are gone (Redis lost them, or the retention passed), the
row still ends the stream: whatever part of the answer the client has not had is sent as one
chunk.

A client that disconnects leaves the job running, unless it asked otherwise
(`X-Cancel-On-Disconnect: true`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator

import redis
from flask import Response

from common.errors import Conflict, NotFound
from common.jobs import queries
from common.jobs.events import parse_view
from common.jobs.models import JobStatus
from common.jobs.results import ChatCompletion
from common.jobs.streams import START, Entry, chunk, tool_call_chars
from common.jobs.views import JobView
from web.context import Services
from web.openai_errors import error_object
from web.serializers import failure_status
from web.stream_hub import Watch

logger = logging.getLogger(__name__)

CANCEL_ON_DISCONNECT = "X-Cancel-On-Disconnect"
DONE = "data: [DONE]\n\n"
KEEP_ALIVE = ": keep-alive\n\n"
# Redis unreachable: read the job row this often instead.
ROW_POLL_SECONDS = 1.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclasses.dataclass
class Relayed:
    """What the client has of the answer (characters of content and reasoning), so an end
    read from the row adds only the rest; `complete` is False once a gap was seen (events
    Redis lost, or trimmed), when the rest cannot be known."""

    content: int = 0
    reasoning: int = 0
    tools: int = 0  # characters of tool-call names and arguments
    role: bool = False
    finished: bool = False
    complete: bool = True

    def note(self, entry: Entry) -> None:
        if entry.offset != (self.content, self.reasoning, self.tools):
            self.complete = False
            self.content, self.reasoning, self.tools = entry.offset
        choice = json.loads(entry.chunk)["choices"][0]
        delta = choice["delta"]
        self.content += len(delta.get("content") or "")
        self.reasoning += len(delta.get("reasoning_content") or "")
        self.tools += tool_call_chars(delta.get("tool_calls"))
        self.role = self.role or "role" in delta
        self.finished = self.finished or choice.get("finish_reason") is not None

    @classmethod
    def resumed(cls, last: Entry | None) -> Relayed:
        """What a client that reconnects after `last` has."""
        if last is None or last.chunk is None:
            return cls(complete=last is not None, role=last is not None)
        sent = cls(content=last.offset[0], reasoning=last.offset[1], tools=last.offset[2],
                   role=True)
        sent.note(last)
        return sent


def sse_response(svc: Services, view: JobView, owner: queries.Owner, *, include_usage: bool,
                 after: str | None = None, cancel_on_disconnect: bool = False,
                 headers: dict[str, str] | None = None) -> Response:
    events = _events(svc, view, owner, include_usage=include_usage, after=after or START,
                     cancel_on_disconnect=cancel_on_disconnect)
    response = Response(events, mimetype="text/event-stream")
    response.headers.update(SSE_HEADERS)
    response.headers.update(headers or {})
    return response


def _events(svc: Services, view: JobView, owner: queries.Owner, *, include_usage: bool,
            after: str, cancel_on_disconnect: bool) -> Iterator[str]:
    hub = svc.stream_hub
    sent = Relayed()
    if after != START:
        try:
            sent = Relayed.resumed(hub.streams.at(view.id, after))
        except redis.RedisError as exc:
            logger.warning("stream relay cannot read the resumed event: %s", exc)
            sent = Relayed.resumed(None)
    keepalive = svc.settings.stream_keepalive_seconds
    ended = False
    try:
        with hub.watching(view.id, after) as watch:
            yield from _relay(svc, view, watch, sent, include_usage, keepalive)
            ended = True
    finally:
        if not ended and cancel_on_disconnect:
            _cancel(svc, view.id, owner)


def _relay(svc: Services, view: JobView, watch: Watch, sent: Relayed, include_usage: bool,
           keepalive: float) -> Iterator[str]:
    """The job's events as they come, then its end: the job its published end carries, else
    the row."""
    while True:
        try:
            entries = svc.stream_hub.next_entries(watch, keepalive)
        except redis.RedisError as exc:
            logger.warning("stream relay cannot read events: %s", exc)
            entries = None
        ended_entry = None
        for entry in entries or ():
            if entry.chunk is not None:
                sent.note(entry)
                yield f"id: {entry.id}\ndata: {entry.chunk}\n\n"
            elif entry.ended is not None:
                ended_entry = entry
                break
        if entries and ended_entry is None:
            continue
        current = (parse_view(ended_entry.view)
                   if ended_entry is not None and ended_entry.view else _read(svc, view.id))
        if ended_entry is None and not current.status.is_terminal:
            if entries is None:
                time.sleep(ROW_POLL_SECONDS)
            else:
                yield KEEP_ALIVE  # and the row was checked: nothing is lost silently
            continue
        yield from _end(current, sent, include_usage)
        return


def _end(view: JobView, sent: Relayed, include_usage: bool) -> Iterator[str]:
    if view.status == JobStatus.SUCCEEDED and isinstance(view.result, ChatCompletion):
        for data in _rest(view, view.result, sent, include_usage):
            yield f"data: {data}\n\n"
    else:
        yield f"data: {json.dumps(_error(view), ensure_ascii=False)}\n\n"
    yield DONE


def _rest(view: JobView, result: ChatCompletion, sent: Relayed, include_usage: bool
          ) -> Iterator[str]:
    """The end of a succeeded job's stream: the part of the answer this client has not had
    (nothing, unless events were lost), the finishing chunk, and the usage chunk."""
    choice = result.choices[0]
    message = choice.message
    created = int(view.created_at.timestamp())
    delta: dict = {} if sent.role else {"role": "assistant"}
    if not sent.complete:
        logger.warning("stream events were lost; the client's answer may miss a part")
    elif len(message.content) > sent.content:
        delta["content"] = message.content[sent.content:]
    if sent.complete and message.reasoning_content \
            and len(message.reasoning_content) > sent.reasoning:
        delta["reasoning_content"] = message.reasoning_content[sent.reasoning:]
    if sent.complete and message.tool_calls and not sent.tools:
        # None of the calls reached this client (no events were published): all of them.
        delta["tool_calls"] = [{"index": i, **call.model_dump()}
                               for i, call in enumerate(message.tool_calls)]
    if delta or not sent.finished:
        yield chunk(job_id=view.id, model=view.model, created=created, delta=delta,
                    finish_reason=choice.finish_reason)
    if include_usage:
        usage = view.usage
        yield json.dumps({
            "id": f"chatcmpl-{view.id}", "object": "chat.completion.chunk",
            "created": created, "model": view.model, "choices": [],
            "usage": _usage_object(usage) if usage else None},
            separators=(",", ":"))


def _usage_object(usage) -> dict:
    """The usage row as OpenAI's usage object (as the job's result has it)."""
    usage_object = {"prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens}
    if usage.image_tokens:
        usage_object["prompt_tokens_details"] = {"image_tokens": usage.image_tokens}
    return usage_object


def _error(view: JobView) -> dict:
    if view.status == JobStatus.CANCELED:
        return error_object(409, f"The job was canceled (job {view.id})", code="job_canceled")
    code = view.error_code or "upstream_error"
    return error_object(failure_status(view), f"{code}: {view.error_message} (job {view.id})",
                        code=code)


def _read(svc: Services, job_id: str) -> JobView:
    with svc.database.connect() as conn:
        return queries.find(conn, job_id)


def _cancel(svc: Services, job_id: str, owner: queries.Owner) -> None:
    try:
        svc.lifecycle.cancel(job_id, owner)
        logger.info("stream client disconnected: job canceled as it asked")
    except (Conflict, NotFound):
        pass  # it ended meanwhile
    except Exception:
        logger.exception("could not cancel the job of a disconnected stream")
