"""Streaming benchmarks: time to first token and total time against the emulator's own
compatible mode (the floor) and LiteLLM's proxy (the peer), and 1,000 open streams on one web
instance, timed chunk by chunk from the emulator's emission stamps (`stamp=1`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import threading
import time
import uuid

import openai
import psutil
import requests
from sqlalchemy import select

from bench import peers
from bench.load import run_concurrently, summary_ms
from bench.stack import WEB_MODEL, BenchStack, deployed_workers
from common.billing.models import UsageRecord
from tests.support.stack import EMULATOR_KEY

CHAT = "/api/bailian/chat/completions"
STAMP = re.compile(r"<t=(\d+(?:\.\d+)?)>")


def _prompt(chunks: int, **knobs) -> str:
    """A prompt the emulator answers in exactly `chunks` content deltas: its reply is
    "Echo: <prompt>", one delta for "Echo", one for ":" and one per short word."""
    assert chunks >= 3
    knobs.setdefault("id", uuid.uuid4().hex[:12])
    directive = "; ".join(f"{k}={v}" for k, v in knobs.items())
    return " ".join(["sea"] * (chunks - 2)) + f" [[emulator: {directive}]]"


class Side:
    """One way of getting the same stream: a base URL for the openai SDK and its key."""

    def __init__(self, name: str, base_url: str, api_key: str, *, jobs: bool = False) -> None:
        self.name = name
        self.base_url = base_url
        self.api_key = api_key
        self.jobs = jobs  # the platform: each stream names its job (X-Job-ID)
        self._clients: dict[int, openai.OpenAI] = {}
        self.samples: list[dict] = []

    def client(self, index: int) -> openai.OpenAI:
        if index not in self._clients:
            self._clients[index] = openai.OpenAI(api_key=self.api_key, base_url=self.base_url,
                                                 max_retries=0, timeout=60)
        return self._clients[index]

    def stream(self, index: int, chunks: int, chunk_ms: int) -> dict:
        """One streamed chat completion; seconds to the first content delta and to the end."""
        client = self.client(index)
        messages = [{"role": "user", "content": _prompt(chunks, chunk_ms=chunk_ms)}]
        started = time.perf_counter()
        first = None
        usage = None
        deltas = 0
        text = ""
        with client.chat.completions.with_streaming_response.create(
                model=peers.LITELLM_MODEL, messages=messages, stream=True,
                stream_options={"include_usage": True}) as response:
            job_id = response.headers.get("X-Job-ID")
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    deltas += 1
                    text += chunk.choices[0].delta.content
                    if first is None:
                        first = time.perf_counter() - started
                if chunk.usage is not None:
                    usage = chunk.usage
        total = time.perf_counter() - started
        return {"ttft": first, "total": total, "deltas": deltas, "text": text, "job_id": job_id,
                "usage": None if usage is None else (usage.prompt_tokens,
                                                     usage.completion_tokens,
                                                     usage.total_tokens)}


class NativeSide(Side):
    """The emulator's native DashScope SSE through the official `dashscope` SDK, as the
    platform's worker reads it (incremental output): the platform's own floor. Its first
    content delta is the first event, where compatible mode sends a role chunk first, and it
    has three fewer paced gaps (no role, usage or [DONE] events)."""

    def __init__(self, api_base: str) -> None:
        super().__init__("native floor", api_base, EMULATOR_KEY)
        self._sessions: dict[int, requests.Session] = {}

    def stream(self, index: int, chunks: int, chunk_ms: int) -> dict:
        from dashscope import Generation

        session = self._sessions.setdefault(index, requests.Session())
        messages = [{"role": "user", "content": _prompt(chunks, chunk_ms=chunk_ms)}]
        started = time.perf_counter()
        first, usage, deltas, text = None, None, 0, ""
        for chunk in Generation.call(model=peers.LITELLM_MODEL, messages=messages,
                                     result_format="message", stream=True,
                                     incremental_output=True, api_key=self.api_key,
                                     base_address=self.base_url, session=session):
            assert chunk.status_code == 200, chunk
            content = chunk.output.choices[0].message.content
            if content:
                deltas += 1
                text += content
                if first is None:
                    first = time.perf_counter() - started
            usage = chunk.usage
        total = time.perf_counter() - started
        return {"ttft": first, "total": total, "deltas": deltas, "text": text, "job_id": None,
                "usage": None if usage is None else (usage.input_tokens, usage.output_tokens,
                                                     usage.total_tokens)}


def platform_streams(stack: BenchStack, token: str) -> tuple[bool, str]:
    """Whether the platform's /v1 answers `"stream": true` with an event stream (yet)."""
    try:
        with requests.post(f"{stack.web_url}/v1/chat/completions", stream=True, timeout=30,
                           headers={"Authorization": f"Bearer {token}"},
                           json={"model": peers.LITELLM_MODEL, "stream": True,
                                 "messages": [{"role": "user", "content": "probe"}],
                                 "stream_options": {"include_usage": True}}) as response:
            kind = response.headers.get("Content-Type", "")
            if response.status_code == 200 and kind.startswith("text/event-stream"):
                for _ in response.iter_lines():
                    pass
                return True, ""
            return False, f"HTTP {response.status_code} {kind}: {response.text[:160]}"
    except requests.RequestException as error:
        return False, f"{type(error).__name__}: {error}"


def _start_litellm(stack: BenchStack) -> Side:
    proc, url, key = peers.start_litellm(
        stack.log_dir, f"{stack.emulator.base}/compatible-mode/v1", EMULATOR_KEY)
    stack.procs["litellm"] = proc
    return Side("litellm", f"{url}/v1", key)


def _usage_mismatches(stack: BenchStack, samples: list[dict], wait_s: float = 15) -> int:
    """Streams without a job id or a usage chunk, or whose usage chunk differs from their
    job's usage row (waited for a while: the row may be committed after the last chunk)."""
    ids = [s["job_id"] for s in samples if s["job_id"]]
    deadline = time.monotonic() + wait_s
    while True:
        with stack.database.session() as session:
            rows = {r.job_id: (r.input_tokens, r.output_tokens, r.total_tokens)
                    for r in session.scalars(select(UsageRecord).where(
                        UsageRecord.job_id.in_(ids)))} if ids else {}
        if len(rows) == len(set(ids)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return sum(1 for s in samples if not s["job_id"] or s["usage"] is None
               or rows.get(s["job_id"]) != tuple(s["usage"]))


def streaming_latency(stack: BenchStack, chunks: int = 20, chunk_ms: int = 20,
                      concurrencies=(1, 32), streams_c1: int = 60, per_thread_c32: int = 3,
                      rounds: int = 3) -> list[dict]:
    """Time to first content delta and total time of one streamed chat completion through
    (a) the emulator's compatible mode directly (the floor), (b) LiteLLM's proxy and (c) the
    platform's /v1, in interleaved blocks; ours - floor against LiteLLM - floor. For (c),
    every stream's usage chunk must equal its job's usage row."""
    from bench.scenarios import CPUS, row

    stack.emulator.configure(latency_ms=0, jitter_ms=0, chunk_interval_ms=0)
    stack.start_deployed_workers()
    token = stack.token()
    sides = [Side("floor", f"{stack.emulator.base}/compatible-mode/v1", EMULATOR_KEY),
             _start_litellm(stack)]
    ours_ok, why = platform_streams(stack, token)
    if ours_ok:
        sides += [NativeSide(stack.emulator.api_base),
                  Side("ours", f"{stack.web_url}/v1", token, jobs=True)]
    else:
        print(f"  platform /v1 does not stream yet ({why}); measuring floor and LiteLLM only",
              file=sys.stderr, flush=True)

    results: dict[tuple[str, int], list[dict]] = {}
    for concurrency in concurrencies:
        per_thread = max(1, streams_c1 // rounds) if concurrency == 1 else per_thread_c32
        for side in sides:  # warm connections, the proxy's and the platform's caches
            run_concurrently(lambda i, s=side: [s.stream(i, chunks, chunk_ms)], concurrency)
        for number in range(rounds):
            order = sides[number % len(sides):] + sides[:number % len(sides)]
            for side in order:
                samples = run_concurrently(
                    lambda i, s=side, n=per_thread: [s.stream(i, chunks, chunk_ms)
                                                     for _ in range(n)], concurrency)
                results.setdefault((side.name, concurrency), []).extend(samples)
    stack.stop("litellm")

    rows = []
    names = [s.name for s in sides]
    expected = "Echo: " + " ".join(["sea"] * (chunks - 2))
    for concurrency in concurrencies:
        stats = {}
        for name in names:
            samples = results[(name, concurrency)]
            # A side may regroup deltas; none may lose or alter text.
            altered = sum(1 for s in samples if s["text"] != expected)
            rows.append(row(f"stream c={concurrency}: {name}, streams whose text is not the "
                            f"answer", altered, None, "streams", target="0",
                            passed=altered == 0,
                            setup=f"{len(samples)} streams; content deltas per stream: "
                                  f"{sorted({s['deltas'] for s in samples})}"))
            samples = [s for s in samples if s["ttft"] is not None]
            stats[name] = {"ttft": summary_ms([s["ttft"] for s in samples]),
                           "total": summary_ms([s["total"] for s in samples])}
        n = stats["floor"]["ttft"]["n"]
        setup = (f"{CPUS} CPUs; openai SDK, {concurrency} client thread(s); {chunks} content "
                 f"deltas {chunk_ms} ms apart; {n} streams per side in {rounds} interleaved "
                 f"blocks; LiteLLM {peers.litellm_version()} ({peers.LITELLM_WORKERS} uvicorn "
                 f"workers); ours: gunicorn {WEB_MODEL}, {deployed_workers()}")
        for metric, label in (("ttft", "time to first token"), ("total", "total time")):
            for q in ("p50", "p99"):
                floor = stats["floor"][metric][q]
                litellm = stats["litellm"][metric][q] - floor
                rows.append(row(f"stream c={concurrency} {label} {q}: floor (emulator "
                                f"compatible mode)", floor, None, "ms", setup=setup))
                rows.append(row(f"stream c={concurrency} {label} {q}: LiteLLM - floor",
                                litellm, floor, "ms", setup=setup))
                if "ours" in stats:
                    ours = stats["ours"][metric][q] - floor
                    rows.append(row(f"stream c={concurrency} {label} {q}: ours - floor", ours,
                                    litellm, "ms", target="<= LiteLLM",
                                    passed=ours <= max(litellm, 0.0), setup=setup))
                    # Like for like: each proxy against the upstream surface it reads.
                    native = stats["native floor"][metric][q]
                    ours_native = stats["ours"][metric][q] - native
                    rows.append(row(f"stream c={concurrency} {label} {q}: ours - native floor",
                                    ours_native, litellm, "ms", target="<= LiteLLM - floor",
                                    passed=ours_native <= max(litellm, 0.0),
                                    setup=f"native floor (dashscope SDK, incremental output, "
                                          f"what our worker reads) {native:.1f} ms; {setup}"))
    if ours_ok:
        ours_samples = [s for c in concurrencies for s in results[("ours", c)]]
        mismatches = _usage_mismatches(stack, ours_samples)
        rows.append(row("stream: usage chunk != job's usage row", mismatches, None, "streams",
                        target="0", passed=mismatches == 0,
                        setup=f"every measured /v1 stream ({len(ours_samples)}): its "
                              f"include_usage chunk vs usage_records of its X-Job-ID"))
    else:
        rows.append(row("stream: ours (platform /v1)", float("nan"), None, "ms",
                        target="<= LiteLLM", passed=False,
                        setup=f"not measured: /v1 does not stream yet ({why[:120]})"))
    return rows


# --- 1,000 open streams -------------------------------------------------------------------

class _RssPeaks(threading.Thread):
    """Peak resident memory of each process of a named group, sampled twice a second."""

    def __init__(self, stack: BenchStack, name: str, skip_root: bool) -> None:
        super().__init__(name=f"rss-{name}", daemon=True)
        self.stack, self.group, self.skip_root = stack, name, skip_root
        self.peaks_mb: dict[int, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            tree = self.stack.process_tree(self.group)
            for member in tree[1:] if self.skip_root else tree:
                with contextlib.suppress(psutil.Error):
                    rss = member.memory_info().rss / 2**20
                    self.peaks_mb[member.pid] = max(self.peaks_mb.get(member.pid, 0.0), rss)

    def stop(self) -> dict[int, float]:
        self._done.set()
        self.join()
        return self.peaks_mb


class _Opened:
    def __init__(self) -> None:
        self.open = 0
        self.completed = 0
        self.errors: list[str] = []
        self.delays: list[float] = []
        # The platform's split of each delay, by the SSE id (the Redis entry's clock): stamp to
        # the worker's append, append to the client; and the delays of each stream's first delta.
        self.to_append: list[float] = []
        self.from_append: list[float] = []
        self.first: list[float] = []
        self.opened_at_sample = 0
        self.all_open = asyncio.Event()


async def _hold_stream(session, url: str, headers: dict, body: dict, state: _Opened,
                       expected_deltas: int, count: int) -> None:
    deltas = 0
    try:
        async with session.post(url, json=body, headers=headers) as response:
            kind = response.headers.get("Content-Type", "")
            if response.status != 200 or not kind.startswith("text/event-stream"):
                text = await response.text()
                state.errors.append(f"HTTP {response.status}: {text[:120]}")
                return
            state.open += 1
            if state.open == count:
                state.all_open.set()
            appended = None
            async for raw in response.content:  # one line at a time, as it arrives
                received = time.time()
                line = raw.decode().strip()
                if line.startswith("id:"):
                    appended = int(line[3:].strip().split("-")[0]) / 1000
                    continue
                if not line.startswith("data:") or line.endswith("[DONE]"):
                    continue
                chunk = json.loads(line[5:])
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content") or ""
                    for stamp in STAMP.findall(content):
                        if not deltas:
                            state.first.append(received - float(stamp))
                        deltas += 1
                        state.delays.append(received - float(stamp))
                        if appended is not None:
                            state.to_append.append(appended - float(stamp))
                            state.from_append.append(received - appended)
                appended = None
            state.open -= 1
    except Exception as error:  # counted and reported, the run goes on
        state.errors.append(f"{type(error).__name__}: {error}"[:160])
        return
    if deltas == expected_deltas:
        state.completed += 1
    else:
        state.errors.append(f"{deltas} of {expected_deltas} deltas")


async def _open_streams(url: str, headers: dict, model: str, *, count: int, chunks: int,
                        chunk_ms: int, ramp_s: float, during) -> tuple[_Opened, object]:
    """`count` streams opened over `ramp_s`, held to their end; `during()` (blocking) runs in
    a thread once every stream is open (or the ramp is over and 30 s have passed).

    The client is aiohttp (a pinned requirement already, the emulator's server): with 1,000
    streams httpx's AsyncClient delivered chunks seconds late (p99 4 s against the emulator
    alone), aiohttp within milliseconds, so the client does not hide the platform's delay."""
    import aiohttp

    state = _Opened()
    timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_read=max(60, chunk_ms / 200))
    connector = aiohttp.TCPConnector(limit=0)  # one connection per stream, no pool cap
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     trust_env=False) as session:
        async def one(index: int) -> None:
            await asyncio.sleep(index * ramp_s / count)
            body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": _prompt(chunks, stamp=1,
                                                                      chunk_ms=chunk_ms)}]}
            await _hold_stream(session, url, headers, body, state, chunks, count)

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.all_open.wait(), timeout=ramp_s + 30)
        state.opened_at_sample = state.open
        sampled = await asyncio.to_thread(during)
        await asyncio.gather(*tasks)
    return state, sampled


def _split(state: _Opened) -> str:
    """Where the delay arises: before the worker's append (upstream read, worker), after it
    (Redis, the web relay, the client), and on each stream's first delta."""
    parts = []
    for name, values in (("stamp->append", state.to_append),
                         ("append->client", state.from_append), ("first delta", state.first)):
        if values:
            s = summary_ms(values)
            parts.append(f"{name} p50 {s['p50']:.1f} / p99 {s['p99']:.1f} ms")
    return "; ".join(parts)


def _sync_chats(url: str, token: str, count: int, timeout: float = 30) -> dict:
    """Sequential small non-streaming chats through the platform's own API: seconds each for
    those answered 200, and how many were not (an error or no answer within `timeout`)."""
    http = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    times, failed, why = [], 0, set()
    for i in range(count):
        started = time.perf_counter()
        try:
            response = http.post(f"{url}{CHAT}", headers=headers, timeout=timeout,
                                 json={"model": "qwen-turbo", "messages": [
                                     {"role": "user", "content": f"small {i}"}]})
        except requests.RequestException as error:
            failed += 1
            why.add(type(error).__name__)
            continue
        if response.status_code == 200:
            times.append(time.perf_counter() - started)
        else:
            failed += 1
            why.add(f"HTTP {response.status_code}: {response.text[:80]}")
    return {"times": times, "failed": failed, "why": sorted(why)}


def open_streams(stack: BenchStack, count: int = 1000, chunks: int = 60, chunk_ms: int = 1000,
                 ramp_s: float = 20.0, sync_samples: int = 40, floor: bool = True) -> list[dict]:
    """`count` concurrent open streams on one web instance (gunicorn, WEB_WORKERS processes):
    peak RSS of each web process, the delay from the emulator's emission stamp to the client
    for every chunk, and ordinary sync chats meanwhile against the same without streams.

    The workers run as deployed: the streams are read from upstream by the gevent streams
    worker (one greenlet each, `count` of them), the sync chats by the threads worker.
    `floor`: the same streams straight from the emulator's compatible mode first, the delay
    the client and the emulator add by themselves."""
    from bench.scenarios import CPUS, row

    stack.emulator.configure(latency_ms=0, jitter_ms=0, chunk_interval_ms=0)
    stack.start_deployed_workers(streams=count)
    token = stack.token()
    _sync_chats(stack.web_url, token, 10)  # warm-up
    quiet = summary_ms(_sync_chats(stack.web_url, token, sync_samples)["times"])
    setup = (f"{CPUS} CPUs; {count} streams opened over {ramp_s:g} s by one asyncio aiohttp "
             f"client, {chunks} stamped deltas {chunk_ms} ms apart; gunicorn "
             f"{WEB_MODEL}; {deployed_workers(count)}")
    rows = []
    floor_delay = None
    if floor:
        state, _ = asyncio.run(_open_streams(
            f"{stack.emulator.base}/compatible-mode/v1/chat/completions",
            {"Authorization": f"Bearer {EMULATOR_KEY}"}, "qwen-turbo", count=count,
            chunks=chunks, chunk_ms=chunk_ms, ramp_s=ramp_s, during=lambda: None))
        floor_delay = summary_ms(state.delays)
        rows.append(row("open streams: emulator direct, stamp->client delay p99",
                        floor_delay["p99"], None, "ms",
                        setup=f"{setup}; the floor: {state.completed}/{count} complete, "
                              f"p50 {floor_delay['p50']:.2f} ms, errors {len(state.errors)}"))
    ok, why = platform_streams(stack, token)
    if not ok:
        rows.append(row("open streams: platform /v1", float("nan"), None, "ms",
                        target="<= 50 ms p99; <= 250 MB per web process", passed=False,
                        setup=f"not measured: /v1 does not stream yet ({why[:120]})"))
        return rows
    web_rss = _RssPeaks(stack, "web", skip_root=True)
    worker_rss = _RssPeaks(stack, "worker", skip_root=False)
    streams_rss = _RssPeaks(stack, "streams-worker", skip_root=False)
    streams_rss.start()
    web_rss.start()
    worker_rss.start()
    me = psutil.Process()
    cpu_before = {"web": stack.cpu_seconds("web"), "worker": stack.cpu_seconds("worker"),
                  "streams-worker": stack.cpu_seconds("streams-worker"),
                  "emulator": stack.cpu_seconds("emulator"),
                  "client": sum(me.cpu_times()[:2])}
    wall_started = time.monotonic()
    state, during = asyncio.run(_open_streams(
        f"{stack.web_url}/v1/chat/completions", {"Authorization": f"Bearer {token}"},
        "qwen-turbo", count=count, chunks=chunks, chunk_ms=chunk_ms, ramp_s=ramp_s,
        during=lambda: _sync_chats(stack.web_url, token, sync_samples)))
    wall = time.monotonic() - wall_started
    cores = {"web": stack.cpu_seconds("web"), "worker": stack.cpu_seconds("worker"),
             "streams-worker": stack.cpu_seconds("streams-worker"),
             "emulator": stack.cpu_seconds("emulator"), "client": sum(me.cpu_times()[:2])}
    cores = {name: (cores[name] - cpu_before[name]) / wall for name in cores}
    web_peaks = web_rss.stop()
    worker_peaks = worker_rss.stop()
    streams_peaks = streams_rss.stop()
    delay = summary_ms(state.delays)
    busy = summary_ms(during["times"])
    errors = "; ".join(sorted(set(state.errors))[:3])
    for pid, peak in sorted(web_peaks.items()):
        rows.append(row(f"open streams: peak RSS, web process {pid}", peak, None, "MB",
                        target="<= 250 MB", passed=peak <= 250, setup=setup))
    rows.append(row("open streams: peak RSS, streams worker",
                    max(streams_peaks.values(), default=0), None, "MB",
                    setup=f"{setup}; the threads worker (sync chats): "
                          f"{max(worker_peaks.values(), default=0):.0f} MB"))
    rows.append(row("open streams: stamp->client delay p99", delay["p99"],
                    floor_delay["p99"] if floor_delay else None, "ms", target="<= 50 ms",
                    passed=delay["p99"] <= 50 and state.completed == count,
                    setup=f"{setup}; p50 {delay['p50']:.2f} ms over {delay['n']} deltas; "
                          f"baseline: emulator direct; {_split(state)}"))
    rows.append(row("open streams: streams complete", state.completed, count, "streams",
                    target=f"{count}", passed=state.completed == count,
                    setup=f"{len(state.errors)} errors{': ' + errors if errors else ''}"))
    rows.append(row("open streams: CPU of the web processes", cores["web"], None, "cores",
                    setup=f"mean over the {wall:.0f} s of the platform phase; streams "
                          f"worker {cores['streams-worker']:.2f}, threads worker "
                          f"{cores['worker']:.2f}, emulator {cores['emulator']:.2f}, this "
                          f"client {cores['client']:.2f} cores (where the delay comes from)"))
    rows.append(row("open streams: sync chat p50 while streams are open", busy["p50"],
                    quiet["p50"], "ms",
                    setup=f"{sync_samples} sequential POST {CHAT} (non-stream, small) with "
                          f"{state.opened_at_sample} streams open, {during['failed']} failed "
                          f"or unanswered in 30 s {during['why'][:2]}; baseline: the same "
                          f"with none; p99 {busy['p99']:.1f} vs {quiet['p99']:.1f} ms"))
    return rows
