"""A streamed job's events: a bounded, expiring Redis Stream per job, the buffer between the
worker that reads DashScope's stream and the web processes that relay it to clients.

The job row stays the truth; the stream only lets any web process relay deltas, lets a client
resume from `Last-Event-ID` (an entry's id), and lets a client disconnect without stopping the
job. Entries, in order:
- `o`: the stream is open (written when the job is submitted, so even a job that ends before
  its first delta gets an end entry);
- `c` + `u` + `n`: one chat.completion.chunk (OpenAI's JSON, relayed verbatim), the cumulative
  usage DashScope had reported with it (`input,output,total`), and how many characters of
  content, reasoning and tool calls (names and arguments) came before it
  (`content,reasoning,tools`: a reader sees a gap, and knows what a resuming client already
  has), written by the worker;
- `e`: the job ended (its status), written after the ending transaction commits, whoever ended
  it (the worker, a cancel, the sweeper). Its published message also carries the job as the
  ending left it (when the ender has it), so a relay ends the stream with no read of the row.
A cancel also sets a flag the streaming worker checks between deltas, to stop reading.

Every delta and end is also published on one channel, with the id of the entry it follows, so
a web process relays it from the message it already has (web/stream_hub.py), reading the
stream only to catch up: after a lost message, on resume, or on arrival.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import redis

from common.billing.pricing import Usage
from common.infra.script_batches import ScriptBatches
from common.jobs.effects import Change
from common.jobs.models import JobKind

logger = logging.getLogger(__name__)

KEY = "bailian:job:{}:events"
CANCEL_KEY = "bailian:job:{}:cancel"
CHANNEL = "bailian:job-stream-entries"
START = "0-0"

# Both scripts publish `<kind> <job id> <previous entry id> <entry id> <payload>`: the entry
# and where it continues from, in the same step as it is written.
_PREVIOUS = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = last[1] and last[1][1] or '0-0'
"""
# KEYS: the stream, the channel, the cancel flag. ARGV: job id, chunk, usage, offset, max
# events, expiry (0: keep the stream's own). Answers whether the job was canceled, so a
# streaming worker learns it with no round trip of its own per delta.
_APPEND = _PREVIOUS + """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*',
                      'c', ARGV[2], 'u', ARGV[3], 'n', ARGV[4])
if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
redis.call('PUBLISH', KEYS[2], 'c ' .. ARGV[1] .. ' ' .. previous .. ' ' .. id .. ' ' ..
           ARGV[4] .. ' ' .. ARGV[2])
return redis.call('EXISTS', KEYS[3])
"""
# Only to a stream that exists: a job that never streamed gets no end entry, and an expired
# stream is not brought back empty. ARGV: job id, status, retention, the job as it ended (JSON,
# or empty): published, not stored, so the stream holds no second copy of the answer.
_END = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
""" + _PREVIOUS + """
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local view = ARGV[4] ~= '' and (' ' .. ARGV[4]) or ''
redis.call('PUBLISH', KEYS[2], 'e ' .. ARGV[1] .. ' ' .. previous .. ' ' .. id .. ' ' ..
           ARGV[2] .. view)
return id
"""


@dataclasses.dataclass(frozen=True)
class Entry:
    id: str
    chunk: str | None = None  # a chat.completion.chunk, as JSON
    usage: Usage | None = None  # cumulative, as DashScope reported it with this chunk
    # Characters of content, reasoning and tool calls before this chunk.
    offset: tuple[int, int, int] = (0, 0, 0)
    ended: str | None = None  # the job's terminal status
    # With a published end: the job as the ending left it (a JobView's JSON; None: read the row).
    view: str | None = None


class JobStreams:
    def __init__(self, redis_client: redis.Redis, *, max_events: int, retention_seconds: int,
                 open_seconds: int) -> None:
        self.redis = redis_client
        self.max_events = max_events
        self.retention_seconds = retention_seconds
        self.open_seconds = open_seconds  # a job's deadline and the retention after it
        # Many streams append at once: their deltas share round trips (a group commit).
        self._append = ScriptBatches(self.redis, _APPEND)
        self._end = self.redis.register_script(_END)

    # --- writing (worker, lifecycle) ---------------------------------------------------------

    def open(self, job_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(KEY.format(job_id), {"o": "1"})
        pipe.expire(KEY.format(job_id), self.open_seconds)
        pipe.execute()

    def append(self, job_id: str, chunk: str, usage: Usage, offset: tuple[int, int, int], *,
               first: bool = False) -> bool:
        """One delta, written and published; True when the job was canceled meanwhile. The
        first of an attempt also renews the expiry, in case Redis lost the stream (and its
        expiry) since it was opened."""
        return bool(self._append([KEY.format(job_id), CHANNEL, CANCEL_KEY.format(job_id)], [
            job_id, chunk, f"{usage.input_tokens},{usage.output_tokens},{usage.total_tokens}",
            ",".join(map(str, offset)), self.max_events, self.open_seconds if first else 0]))

    def end(self, job_id: str, status: str, view_json: str | None = None) -> None:
        """The end entry; `view_json`: the job as the ending left it, for live readers."""
        self._end(keys=[KEY.format(job_id), CHANNEL],
                  args=[job_id, status, self.retention_seconds, view_json or ""])

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(CANCEL_KEY.format(job_id), "1", ex=self.open_seconds)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.get(CANCEL_KEY.format(job_id)))

    def after_commit(self, change: Change) -> None:
        """The lifecycle's hook: open the stream of a submitted streaming job; end the stream
        of a job that ended (and stop its worker's read, when a cancel ended it)."""
        if change.kind != JobKind.CHAT:
            return
        if change.submitted and change.streamed:
            self.open(change.job_id)
        elif change.ended is not None and change.streamed is not False:
            self.end(change.job_id, change.ended.value, change.view_json)
            if change.interrupts:
                self.request_cancel(change.job_id)

    # --- reading (web, worker) ---------------------------------------------------------------

    def read(self, job_id: str, after: str) -> list[Entry]:
        """The entries after `after` (an entry id), without waiting. (Waiting for them is
        web/stream_hub.py's, from the published entries.)"""
        answer = self.redis.xread({KEY.format(job_id): after}, count=500)
        return [entry(entry_id, fields) for _, entries in answer or ()
                for entry_id, fields in entries]

    def at(self, job_id: str, entry_id: str) -> Entry | None:
        """One entry (the last one a resuming client had), or None if it is gone."""
        found = self.redis.xrange(KEY.format(job_id), min=entry_id, max=entry_id)
        return entry(*found[0]) if found else None

    def last_delta(self, job_id: str) -> Entry | None:
        """The last delta written (by any attempt), or None if none was."""
        for entry_id, fields in self.redis.xrevrange(KEY.format(job_id), count=50):
            if "c" in fields:
                return entry(entry_id, fields)
        return None


def entry(entry_id: str, fields: dict[str, str]) -> Entry:
    if "e" in fields:
        return Entry(entry_id, ended=fields["e"])
    if "c" in fields:
        return Entry(entry_id, chunk=fields["c"], usage=_usage(fields.get("u")),
                     offset=_offset(fields.get("n", "0,0")))
    return Entry(entry_id)  # the open marker


def published(message: str) -> tuple[str, str, Entry] | None:
    """(job id, the id of the entry it follows, the entry) of a message on CHANNEL."""
    try:
        kind, job_id, previous, entry_id, payload = message.split(" ", 4)
        if kind == "e":
            status, _, view = payload.partition(" ")
            return job_id, previous, Entry(entry_id, ended=status, view=view or None)
        offset, chunk_json = payload.split(" ", 1)
        return job_id, previous, Entry(entry_id, chunk=chunk_json, offset=_offset(offset))
    except ValueError:
        logger.warning("unreadable stream message ignored: %.80s", message)
        return None


def job_of(message: str) -> str:
    """The job id of a message on CHANNEL, read without parsing the rest."""
    return message[2:message.find(" ", 2)]


def tool_call_chars(calls) -> int:
    """The characters of tool-call fragments (names and arguments): a stream's third offset."""
    return sum(len((call.get("function") or {}).get("name", ""))
               + len((call.get("function") or {}).get("arguments", "")) for call in calls or ())


def _offset(raw: str) -> tuple[int, int, int]:
    """`content,reasoning[,tools]`: entries written before tool calls streamed have two."""
    content, reasoning, tools = ([int(x) for x in raw.split(",")] + [0])[:3]
    return content, reasoning, tools


def _usage(raw: str | None) -> Usage | None:
    if not raw:
        return None
    input_tokens, output_tokens, total = (int(x) for x in raw.split(","))
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total)


def chunk(*, job_id: str, model: str, created: int, delta: dict, finish_reason: str | None
          ) -> str:
    """One chat.completion.chunk, OpenAI's shape exactly."""
    return json.dumps({"id": f"chatcmpl-{job_id}", "object": "chat.completion.chunk",
                       "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta,
                                    "finish_reason": finish_reason}]},
                      ensure_ascii=False, separators=(",", ":"))


def job_streams(settings, redis_client: redis.Redis) -> JobStreams:
    return JobStreams(redis_client, max_events=settings.stream_max_events,
                      retention_seconds=settings.stream_retention_seconds,
                      open_seconds=settings.job_deadline_seconds
                      + settings.stream_retention_seconds)
