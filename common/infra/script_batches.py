"""One Lua script called by many threads (greenlets, in the streams worker) of a process at
once, sent to Redis in pipelines: a group commit.

A caller that finds no batch on its way sends everything queued so far in one round trip,
answers every caller in it, and hands the sending to the first caller queued meanwhile, if
any; a caller alone pays one round trip, as a plain call would. The streams worker appends a
delta per stream per chunk (common/jobs/streams.py), and each append's own round trip (the
send, the wait, the reply) was its largest cost per delta; when a thousand streams' deltas
arrive together, they now share round trips, which is when the cost mattered.

Hand-written: redis-py pipelines batch one caller's commands, not many callers'.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import redis
from redis.exceptions import NoScriptError


class _Call:
    __slots__ = ("args", "error", "keys", "result", "sends", "woken")

    def __init__(self, keys: Sequence, args: Sequence) -> None:
        self.keys, self.args = keys, args
        self.result = None
        self.error: Exception | None = None
        self.sends = False  # this caller sends the next batch
        self.woken = threading.Event()  # answered, or handed the sending


class ScriptBatches:
    def __init__(self, redis_client: redis.Redis, source: str) -> None:
        self.redis = redis_client
        self._script = redis_client.register_script(source)
        self._lock = threading.Lock()
        self._queued: list[_Call] = []
        self._sending = False
        self.batches_sent = 0

    def __call__(self, keys: Sequence, args: Sequence):
        """The script's answer to this call, as `Script.__call__` would give it (raises what
        Redis raised, redis.RedisError when it cannot be reached)."""
        call = _Call(keys, args)
        with self._lock:
            self._queued.append(call)
            if not self._sending:
                self._sending = call.sends = True
        if not call.sends:
            try:
                call.woken.wait()
            except BaseException:  # killed while waiting (a time limit): leave nothing stuck
                self._abandon(call)
                raise
        if call.sends:
            self._send_queued()
        if call.error is not None:
            raise call.error
        return call.result

    def _send_queued(self) -> None:
        with self._lock:
            batch, self._queued = self._queued, []
        answers = None
        try:
            answers = self._execute(batch)
        except redis.RedisError as exc:
            answers = [exc] * len(batch)
        finally:
            if answers is None:  # the sender was killed (a time limit) before Redis answered
                answers = [redis.ConnectionError("the batch's sender was interrupted")
                           ] * len(batch)
            for call, answer in zip(batch, answers, strict=True):
                if isinstance(answer, Exception):
                    call.error = answer
                else:
                    call.result = answer
                call.woken.set()
            with self._lock:
                self._hand_on()

    def _abandon(self, call: _Call) -> None:
        with self._lock:
            if call in self._queued:  # not sent yet (sent: its sender answers it, harmlessly)
                self._queued.remove(call)
                if call.sends:  # it had been handed the sending: pass it on
                    self._hand_on()

    def _hand_on(self) -> None:
        """The sending passes to the first caller queued, or stops (under the lock)."""
        if self._queued:
            following = self._queued[0]
            following.sends = True
            following.woken.set()
        else:
            self._sending = False

    def _execute(self, batch: list[_Call]) -> list:
        answers = self._pipeline(batch)
        # Redis lost its scripts (a restart, SCRIPT FLUSH): load it, and send again only the
        # calls it refused (the others ran: sending them again would append twice).
        refused = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if refused:
            self.redis.script_load(self._script.script)
            for i, answer in zip(refused, self._pipeline([batch[i] for i in refused]),
                                 strict=True):
                answers[i] = answer
        return answers

    def _pipeline(self, batch: list[_Call]) -> list:
        pipe = self.redis.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(self._script.sha, len(call.keys), *call.keys, *call.args)
        self.batches_sent += 1
        return pipe.execute(raise_on_error=False)
