"""What a streamed answer looks like on the wire: native SSE events and compatible-mode chunks.

Pure functions from an answer (and an optional in-stream fault) to the events DashScope sends;
`Emulator.send_stream` writes them, paced. Native framing and chunk shapes follow
dashscope-protocol.md §3.4/§3.5 and dashscope-protocol-2.md §1.3; compatible mode follows
dashscope-protocol.md §4.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

from emulator import text
from emulator.core import FAULTS, openai_error_body
from emulator.errors import EmulatorError


@dataclasses.dataclass(frozen=True)
class StreamFault:
    """`fault=stream-error`: event number `at` (default 2) is an error instead of a chunk.

    `error=` names the error from FAULTS (default 500, InternalError); `status=` also writes
    the `status:` line that sets the 1.x SDK's status (dashscope-protocol.md §3.5).
    """

    at: int
    error: EmulatorError
    explicit_status: int | None = None

    @classmethod
    def of(cls, found: dict[str, str]) -> StreamFault:
        name = found.get("error", "500")
        if name not in FAULTS:
            # A mistyped knob must not pass as the default error.
            raise EmulatorError(400, "InvalidParameter", f"unknown emulator error={name}")
        status, code, message = FAULTS[name]
        explicit = int(found["status"]) if "status" in found else None
        return cls(at=max(1, int(found.get("at", 2))),
                   error=EmulatorError(explicit or status, code, message),
                   explicit_status=explicit)


# `stamp=1`: the n-th streamed content delta is this mark, which `Stamper` turns into the
# wall-clock time the event first carrying it is written; token counts stay the real answer's.
_STAMP_MARK = "<t=@emulator-stamp-{}@>"
_STAMP_BYTES = re.compile(rb"@emulator-stamp-(\d+)@")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One deterministic answer, streamed or not."""

    reasoning: str  # "" unless the request runs in thinking mode
    content: str
    finish: str  # "stop" or "length"
    input_tokens: int
    thinking: bool
    stamped: bool = False  # `stamp=1`: streamed content deltas say when they were sent
    tool_calls: tuple[dict, ...] = ()  # {"id", "name", "arguments"}: the answer calls tools
    multimodal: bool = False  # content as a list of {"text"} items (section 3)
    image_tokens: int = 0  # of input_tokens, those of the images
    detailed_usage: bool = False  # newer models' input_tokens_details (section 3.2)
    choices: int = 1  # n (non-streaming answers)
    top_logprobs: int | None = None  # logprobs asked for: this many alternatives (at most 1)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else self.finish

    def tool_tokens(self) -> int:
        return sum(text.count_tokens(call["name"] + call["arguments"])
                   for call in self.tool_calls)

    def steps(self) -> list[tuple[str, str]]:
        """(reasoning delta, content delta) per chunk: all reasoning first, then the content."""
        reasoning = [(piece, "") for piece in text.split_tokens(self.reasoning)]
        return reasoning + [("", piece) for piece in text.split_tokens(self.content)]

    def shown(self, content_delta: str, number: int) -> str:
        """What a stream carries for its `number`-th content delta: the delta, or a mark."""
        return _STAMP_MARK.format(number) if self.stamped and content_delta else content_delta

    def native_usage(self, reasoning: str, content: str, streamed: bool = True) -> dict:
        """Cumulative usage after `reasoning` and `content` were produced (part 2 §1.3)."""
        reasoning_tokens = text.count_tokens(reasoning)
        output = reasoning_tokens + text.count_tokens(content)
        if not streamed:  # the whole answer: every choice (n), and the tool calls
            output = output * self.choices + self.tool_tokens()
        if self.multimodal:
            return self._multimodal_usage(output)
        if streamed and not self.thinking:
            # The key order recorded for a plain stream (part 1 §3.4).
            return {"total_tokens": self.input_tokens + output, "input_tokens": self.input_tokens,
                    "output_tokens": output}
        # The order recorded for answers (part 1 §3.2) and thinking streams (part 2 §1.3).
        usage = {"total_tokens": self.input_tokens + output, "output_tokens": output,
                 "input_tokens": self.input_tokens}
        if self.thinking:
            usage["output_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return usage

    def _multimodal_usage(self, output: int) -> dict:
        """Section 3.2: image_tokens inside input_tokens; older models send no total."""
        usage = {"output_tokens": output, "input_tokens": self.input_tokens,
                 "image_tokens": self.image_tokens}
        if self.detailed_usage:
            usage["input_tokens_details"] = {"image_tokens": self.image_tokens,
                                             "text_tokens": self.input_tokens - self.image_tokens}
            usage["total_tokens"] = self.input_tokens + output
        return usage

    def output_content(self, content: str):
        """What a message's `content` holds: the text, or the multimodal list of items."""
        if not self.multimodal:
            return content
        return [{"text": content}] if content else []

    def logprobs(self) -> dict:
        """Recorded shape (section 2.6); each token certain, one alternative at most."""
        def entry(piece: str) -> dict:
            return {"token": piece, "logprob": 0.0, "bytes": list(piece.encode())}
        return {"content": [{**entry(piece), "top_logprobs": [entry(piece)] * min(
            1, self.top_logprobs or 0)} for piece in text.split_tokens(self.content)]}

    def compatible_usage(self) -> dict:
        reasoning_tokens = text.count_tokens(self.reasoning)
        completion = reasoning_tokens + text.count_tokens(self.content) + self.tool_tokens()
        usage = {"prompt_tokens": self.input_tokens, "completion_tokens": completion,
                 "total_tokens": self.input_tokens + completion}
        if self.thinking:
            # GUESS (part 2 §1.5): OpenAI's field name; DashScope's was not captured.
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return usage


class Stamper:
    """Fills one stream's stamp marks as its events are written: a mark is the time the event
    that first carried it was written (cumulative native output repeats earlier stamps, as it
    repeats earlier text)."""

    def __init__(self) -> None:
        self.times: dict[bytes, bytes] = {}

    def stamp_event(self, event: bytes) -> bytes:
        if b"@emulator-stamp-" not in event:
            return event
        now = f"{time.time():.6f}".encode()
        return _STAMP_BYTES.sub(lambda mark: self.times.setdefault(mark[1], now), event)


# --- native SSE ---------------------------------------------------------------------------

def sse_event(event_id: int, event: str, status: int, data: dict,
              explicit_status: int | None = None) -> bytes:
    """`id:N`, `event:…`, the `:HTTP_STATUS/…` comment, `data:` with no spaces, a blank line."""
    lines = [f"id:{event_id}", f"event:{event}", f":HTTP_STATUS/{status}"]
    if explicit_status is not None:
        # Only this line sets the SDK's status for an error event (part 1 §0.4).
        lines.append(f"status:{explicit_status}")
    lines.append("data:" + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def native_chunks(answer: Answer, incremental: bool, message_format: bool,
                  request_id: str) -> list[dict]:
    """Every `data:` payload of a native stream, the final one carrying the finish reason.

    With incremental output each chunk carries only its delta; without, the whole text so
    far (part 2 §1.2). Unfinished chunks say the string "null"; the last chunk is an extra
    one with empty text (part 2 §0.A.2), or the whole text when output is cumulative.
    """
    chunks, reasoning_so_far, content_so_far, shown_so_far = [], "", "", ""
    for number, (reasoning_delta, content_delta) in enumerate(answer.steps()):
        reasoning_so_far += reasoning_delta
        content_so_far += content_delta
        shown = answer.shown(content_delta, number)
        shown_so_far += shown
        chunks.append(_native_chunk(
            answer, reasoning_delta if incremental else reasoning_so_far,
            shown if incremental else shown_so_far, "null",
            message_format, answer.native_usage(reasoning_so_far, content_so_far), request_id))
    final_reasoning, final_content = ("", "") if incremental else (reasoning_so_far,
                                                                   shown_so_far)
    chunks.append(_native_chunk(answer, final_reasoning, final_content, answer.finish,
                                message_format,
                                answer.native_usage(reasoning_so_far, content_so_far),
                                request_id))
    return chunks


def _native_chunk(answer: Answer, reasoning: str, content: str, finish: str,
                  message_format: bool, usage: dict, request_id: str) -> dict:
    if not message_format:
        output = {"finish_reason": finish, "text": content}
    elif answer.multimodal:
        output = {"choices": [{"message": {"content": answer.output_content(content),
                                           "role": "assistant"}, "finish_reason": finish}]}
    elif answer.thinking:
        # The recorded chunk's key order (part 2 §1.3): content, reasoning_content, role.
        output = {"choices": [{"message": {"content": content, "reasoning_content": reasoning,
                                           "role": "assistant"}, "finish_reason": finish}]}
    else:
        output = {"choices": [{"message": {"content": content, "role": "assistant"},
                               "finish_reason": finish}]}
    return {"output": output, "usage": usage, "request_id": request_id}


def native_output(answer: Answer, message_format: bool) -> dict:
    """A non-streaming answer's `output`, in the recorded key order (part 1 §3.2/§3.3)."""
    if not message_format:
        return {"finish_reason": answer.finish, "text": answer.content}
    message = {"role": "assistant", "content": answer.output_content(answer.content)}
    if answer.thinking:
        message["reasoning_content"] = answer.reasoning
    if answer.tool_calls:
        # Recorded (section 2.2): content "" beside the calls, arguments a JSON string.
        message["content"] = answer.output_content("")
        message["tool_calls"] = [{"function": {"name": c["name"], "arguments": c["arguments"]},
                                  "index": i, "id": c["id"], "type": "function"}
                                 for i, c in enumerate(answer.tool_calls)]
    choice = {"finish_reason": answer.finish_reason, "message": message}
    if answer.top_logprobs is not None and not answer.tool_calls:
        choice["logprobs"] = answer.logprobs()
    if answer.choices == 1:
        return {"choices": [choice]}
    return {"choices": [{**choice, "index": i} for i in range(answer.choices)]}


def native_tool_chunks(answer: Answer, request_id: str) -> list[dict]:
    """A streamed tool-call answer, as recorded (section 2.3): one fragment per chunk, the
    first of each call with its id, type, name and an arguments prefix, the rest `"id": ""`
    and more arguments; the chunk of the last fragment says "tool_calls", no chunk follows."""
    fragments = []
    for index, call in enumerate(answer.tool_calls):
        arguments = call["arguments"]
        middle = len(arguments) // 2
        fragments.append({"index": index, "id": call["id"], "type": "function",
                          "function": {"name": call["name"], "arguments": arguments[:middle]}})
        fragments.append({"index": index, "id": "", "type": "function",
                          "function": {"arguments": arguments[middle:]}})
    chunks, produced = [], ""
    for number, fragment in enumerate(fragments, start=1):
        produced += fragment["function"].get("name", "") + fragment["function"]["arguments"]
        usage = answer.native_usage("", "")
        usage["output_tokens"] = text.count_tokens(produced)
        if "total_tokens" in usage:
            usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        chunks.append({"output": {"choices": [{
            "message": {"content": answer.output_content(""), "tool_calls": [fragment],
                        "role": "assistant"}, "index": 0,
            "finish_reason": "tool_calls" if number == len(fragments) else "null"}]},
            "usage": usage, "request_id": request_id})
    return chunks


def native_events(chunks: list[dict], failure: StreamFault | None,
                  request_id: str) -> list[bytes]:
    """The stream's events; a failure replaces event `at`, or the final chunk if past it."""
    if failure is None:
        return [sse_event(n, "result", 200, chunk) for n, chunk in enumerate(chunks, start=1)]
    failure_at = min(failure.at, max(len(chunks), 1))
    events = [sse_event(n, "result", 200, chunk)
              for n, chunk in enumerate(chunks[:failure_at - 1], start=1)]
    error = failure.error
    # Every error event needs `code` and `message` (part 1 §0.6).
    return [*events, sse_event(failure_at, "error", error.status,
                               {"code": error.code, "message": error.message,
                                "request_id": request_id}, failure.explicit_status)]


# --- compatible mode ----------------------------------------------------------------------

def compatible_event(payload: dict | str) -> bytes:
    """`data: …` with a space, as OpenAI and DashScope's compatible mode write it (§4)."""
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False,
                                                               separators=(",", ":"))
    return f"data: {body}\n\n".encode()


def compatible_chunks(answer: Answer, common: dict, include_usage: bool) -> list[dict | str]:
    """Every `data:` payload: the role chunk, deltas, the finish chunk, usage, `[DONE]`."""
    base = {**common, "object": "chat.completion.chunk", "usage": None}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"delta": delta, "index": 0, "logprobs": None,
                                     "finish_reason": finish}]}

    if answer.tool_calls:
        # Section 2.4 (GUESS, not captured): OpenAI's form, id and name on the first delta.
        chunks = [chunk({"content": None, "role": "assistant"})]
        for index, call in enumerate(answer.tool_calls):
            middle = len(call["arguments"]) // 2
            chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"],
                                                 "type": "function", "function": {
                                                     "name": call["name"], "arguments": ""}}]}))
            chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                       for part in (call["arguments"][:middle], call["arguments"][middle:])]
        chunks.append(chunk({}, "tool_calls"))
        if include_usage:
            chunks.append({**base, "choices": [], "usage": answer.compatible_usage()})
        return [*chunks, "[DONE]"]
    if answer.thinking:
        # GUESS (part 2 §1.5 names only the field): content stays null while reasoning
        # streams and reasoning_content null once content streams.
        chunks = [chunk({"content": None, "reasoning_content": "", "role": "assistant"})]
        for number, (reasoning_delta, content_delta) in enumerate(answer.steps()):
            chunks.append(chunk({"content": None, "reasoning_content": reasoning_delta}
                                if reasoning_delta else
                                {"content": answer.shown(content_delta, number),
                                 "reasoning_content": None}))
    else:
        chunks = [chunk({"content": "", "role": "assistant"})]
        chunks += [chunk({"content": answer.shown(piece, number)})
                   for number, (_, piece) in enumerate(answer.steps())]
    chunks.append(chunk({"content": ""}, answer.finish))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": answer.compatible_usage()})
    return [*chunks, "[DONE]"]


def compatible_events(chunks: list[dict | str], failure: StreamFault | None) -> list[bytes]:
    """The stream's events; a failure replaces event `at`, at latest the last before [DONE]."""
    if failure is None:
        return [compatible_event(chunk) for chunk in chunks]
    failure_at = min(failure.at, len(chunks) - 1)
    # "Mid-stream errors arrive as data: {"error":…}" (§4); GUESS: no [DONE] follows, the
    # connection closes as after a native error event.
    return [*(compatible_event(chunk) for chunk in chunks[:failure_at - 1]),
            compatible_event(openai_error_body(failure.error))]


def compatible_message(answer: Answer) -> dict:
    if answer.tool_calls:
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in answer.tool_calls]}
    message = {"role": "assistant", "content": answer.content}
    if answer.thinking:
        message["reasoning_content"] = answer.reasoning
    return message
