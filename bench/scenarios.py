"""Benchmark scenarios. Each returns rows: figure, baseline, ratio, target and the setup used."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
import uuid
from collections.abc import Callable

import requests
from dashscope import Generation
from sqlalchemy import func, select, update

from bench.console import console_pages
from bench.load import run_concurrently, summary_ms, throughput
from bench.stack import WEB_MODEL, BenchStack
from bench.streaming import open_streams, streaming_latency
from common.jobs.models import Job, JobStatus

CHAT = "/api/bailian/chat/completions"
CPUS = os.cpu_count()


def row(name: str, figure: float, baseline: float | None, unit: str, *, target: str = "",
        passed: bool | None = None, setup: str = "", ratio: float | None = None) -> dict:
    if ratio is None and baseline:
        ratio = figure / baseline
    return {"scenario": name, "figure": round(figure, 3), "baseline": None if baseline is None
            else round(baseline, 3), "unit": unit, "ratio": None if ratio is None
            else round(ratio, 3), "target": target, "pass": passed, "setup": setup}


def _messages(tag: str) -> list[dict]:
    return [{"role": "user", "content": f"benchmark message {tag}"}]


def _pairs(url: str, headers: dict, api_base: str):
    """One client thread's pairs of calls: a direct SDK call to the emulator, then the same
    request through `url`; returns (through url, direct) seconds for each pair."""
    http = requests.Session()
    sdk_http = requests.Session()

    def run(count: int) -> list[tuple[float, float]]:
        samples = []
        for _ in range(count):
            body = {"model": "qwen-turbo", "messages": _messages(uuid.uuid4().hex)}
            started = time.perf_counter()
            direct = Generation.call(model="qwen-turbo", messages=body["messages"],
                                     result_format="message", api_key="sk-emulator-test-key",
                                     base_address=api_base, session=sdk_http)
            direct_s = time.perf_counter() - started
            assert direct.status_code == 200
            started = time.perf_counter()
            response = http.post(url, json=body, headers=headers)
            through_s = time.perf_counter() - started
            assert response.status_code == 200, response.text
            samples.append((through_s, direct_s))
        return samples
    return run


class _CpuMeter:
    """CPU seconds spent by named process groups while inside `measure()`, summed."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.spent: dict[str, float] = {}

    def _now(self, name: str) -> float:
        return self.stack.servers_cpu_seconds() if name == "servers" \
            else self.stack.cpu_seconds(name)

    def measure(self, names: tuple[str, ...], work: Callable[[], list]) -> list:
        before = {name: self._now(name) for name in names}
        result = work()
        for name in names:
            self.spent[name] = self.spent.get(name, 0.0) + self._now(name) - before[name]
        return result


def sync_chat_overhead(stack: BenchStack, pairs: int = 300, block: int = 25) -> list[dict]:
    """Platform latency minus a direct SDK call to the same emulator, measured in pairs, and
    the floors this architecture stands on measured the same way: a bare Flask proxy making
    the same SDK call in its request, and a bare Celery round trip. The sequential figures
    are taken in alternating blocks (platform, proxy, Celery, platform, ...), so a slower
    minute of a shared machine slows every side alike; CPU per request is summed per side
    over its blocks."""
    stack.emulator.configure(latency_ms=0, jitter_ms=0)
    stack.start_worker("threads", 32)
    headers = {"Authorization": f"Bearer {stack.token()}"}
    bare = stack.start_bare_flask()
    stack.start_noop_worker("threads", 32)
    noop = _noop_app(stack)
    api_base = stack.emulator.api_base
    platform = _pairs(f"{stack.web_url}{CHAT}", headers, api_base)
    proxy = _pairs(f"{bare}/proxy", {}, api_base)

    round_trips = _round_trips(noop)
    platform(10), proxy(10), round_trips(10)  # warm connections and caches first
    meter = _CpuMeter(stack)
    sides: dict[str, list] = {"platform": [], "proxy": [], "celery": []}
    for _ in range(pairs // block):
        sides["platform"] += meter.measure(("web", "worker", "servers"),
                                           lambda: platform(block))
        sides["proxy"] += meter.measure(("bare-flask",), lambda: proxy(block))
        sides["celery"] += meter.measure(("noop-worker",), lambda: round_trips(block))
    stack.stop("bare-flask")
    stack.stop("noop-worker")
    n = len(sides["platform"])
    per_request = {name: spent * 1000 / n for name, spent in meter.spent.items()}

    rows = []
    setup = (f"{CPUS} CPUs; gunicorn {WEB_MODEL}; worker threads x32; "
             f"1 client thread, each a direct call then a platform call; {n} pairs in blocks "
             f"of {block}, alternating with the floors' blocks")
    overhead = summary_ms([p - d for p, d in sides["platform"]])
    through = summary_ms([p for p, _ in sides["platform"]])
    direct = summary_ms([d for _, d in sides["platform"]])
    proxy_ms = summary_ms([p - d for p, d in sides["proxy"]])
    celery_ms = summary_ms(sides["celery"])
    floors = proxy_ms["p50"] + celery_ms["p50"]
    for q, times in (("p50", 2), ("p95", None), ("p99", 3)):
        rows.append(row(f"sync chat overhead c=1 {q}", overhead[q], direct[q], "ms",
                        ratio=through[q] / direct[q],
                        target=f"<= {times} x floors ({times * floors:.2f} ms)" if times else "",
                        passed=overhead[q] <= times * floors if times else None, setup=setup))
    rows += [row(f"floor: bare Flask proxy overhead c=1 {q}", proxy_ms[q], None, "ms",
                 setup=f"{CPUS} CPUs; Flask + the SDK call in the request, gunicorn "
                       f"{WEB_MODEL}; minus the direct call, "
                       f"{proxy_ms['n']} pairs in blocks")
             for q in ("p50", "p99")]
    rows += [row(f"floor: bare Celery round trip c=1 {q}", celery_ms[q], None, "ms",
                 setup=f"{CPUS} CPUs; send_task + result.get(), no-op task on threads x32, "
                       f"same broker settings; {celery_ms['n']} sequential, in blocks")
             for q in ("p50", "p99")]
    proxy_cpu = meter.spent["bare-flask"] * 1000 / len(sides["proxy"])
    noop_cpu = meter.spent["noop-worker"] * 1000 / len(sides["celery"])
    rows += [
        row("sync c=1 CPU per request: web processes", per_request["web"], proxy_cpu, "ms",
            target="<= 2x", passed=per_request["web"] <= 2 * proxy_cpu,
            setup="gunicorn arbiter + workers; baseline: the bare Flask proxy's"),
        row("sync c=1 CPU per request: worker process", per_request["worker"], noop_cpu, "ms",
            target="<= 2x", passed=per_request["worker"] <= 2 * noop_cpu,
            setup="Celery threads x32; baseline: the no-op Celery worker's per task"),
        row("sync c=1 CPU per request: MariaDB + Redis", per_request["servers"], None, "ms",
            setup="the machine's mariadbd and redis-server, during the platform's blocks"),
    ]
    for concurrency in (16, 64):
        per_thread = max(20, pairs // concurrency) + 10
        samples = run_concurrently(
            lambda _i, count=per_thread: _pairs(f"{stack.web_url}{CHAT}", headers,
                                                api_base)(count)[10:],
            concurrency)
        overhead = summary_ms([p - d for p, d in samples])
        through = summary_ms([p for p, _ in samples])
        direct = summary_ms([d for _, d in samples])
        for q in ("p50", "p95", "p99"):
            rows.append(row(f"sync chat overhead c={concurrency} {q}", overhead[q], direct[q],
                            "ms", ratio=through[q] / direct[q],
                            setup=f"{CPUS} CPUs; gunicorn {WEB_MODEL}; "
                                  f"worker threads x32; {concurrency} client threads, each a "
                                  f"direct call then a platform call; {overhead['n']} pairs"))
    return rows


def _round_trips(noop):
    """Sequential bare Celery round trips: send_task, then wait for the no-op's result."""
    def run(count: int) -> list[float]:
        times = []
        for i in range(count):
            started = time.perf_counter()
            noop.send_task("noop", args=[i]).get(timeout=30)
            times.append(time.perf_counter() - started)
        return times
    return run


def _noop_app(stack: BenchStack):
    os.environ.update({k: v for k, v in stack.noop_env().items() if k.startswith("NOOP_")})
    from bench.baselines.celery_noop import app

    return app


def async_submit_throughput(stack: BenchStack, seconds: float = 8, concurrency: int = 16
                            ) -> list[dict]:
    """Accepted async submissions per second against a bare Flask JSON endpoint."""
    stack.stop("worker")  # measure the web tier alone; the backlog is purged afterwards
    token = stack.token()
    bare = stack.start_bare_flask()
    body = {"model": "qwen-turbo", "messages": _messages("async")}

    def platform_call():
        http = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}

        def call():
            assert http.post(f"{stack.web_url}{CHAT}", json=body,
                             headers=headers).status_code == 202
        return call

    def bare_call():
        http = requests.Session()

        def call():
            assert http.post(f"{bare}/json", json=body).status_code == 202
        return call

    baseline, _ = throughput(bare_call, concurrency, seconds)
    figure, errors = throughput(platform_call, concurrency, seconds)
    stack.stop("bare-flask")
    stack.purge_broker()
    with stack.database.session() as session:
        session.execute(update(Job).where(Job.status == JobStatus.QUEUED)
                        .values(status=JobStatus.CANCELED))
    return [row("async submit throughput", figure, baseline, "req/s", target=">= 0.25x",
                passed=figure / baseline >= 0.25 and errors == 0,
                setup=f"{CPUS} CPUs; both on gunicorn {WEB_MODEL}; "
                      f"{concurrency} client threads; {seconds:g}s; errors={errors}")]


def _platform_jobs_per_second(stack: BenchStack, count: int, concurrency: int) -> float:
    token = stack.token()
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}
    started = time.perf_counter()

    def submit(index: int) -> list[str]:
        http = requests.Session()
        ids = []
        for i in range(index, count, concurrency):
            response = http.post(f"{stack.web_url}{CHAT}", headers=headers,
                                 json={"model": "qwen-turbo", "messages": _messages(str(i))})
            ids.append(response.json()["data"]["id"])
        return ids

    ids = run_concurrently(submit, concurrency)
    while True:
        with stack.database.session() as session:
            done = session.scalar(select(func.count()).select_from(Job).where(
                Job.id.in_(ids), Job.status == JobStatus.SUCCEEDED))
        if done == len(ids):
            return len(ids) / (time.perf_counter() - started)
        time.sleep(0.05)


def _noop_round_trips_per_second(stack: BenchStack, count: int, concurrency: int) -> float:
    app = _noop_app(stack)
    started = time.perf_counter()

    def send(index: int) -> list:
        results = [app.send_task("noop", args=[i]) for i in range(index, count, concurrency)]
        return [r.get(timeout=120) for r in results]

    run_concurrently(send, concurrency)
    return count / (time.perf_counter() - started)


def end_to_end_jobs(stack: BenchStack, count: int = 400, latency_ms: int = 200) -> list[dict]:
    """Chat jobs per second with a slow upstream, against bare Celery no-op round trips."""
    stack.emulator.configure(latency_ms=latency_ms, jitter_ms=0)
    stack.start_worker("threads", 32)
    stack.start_noop_worker("threads", 32)
    baseline = _noop_round_trips_per_second(stack, count, 32)
    stack.stop("noop-worker")
    figure = _platform_jobs_per_second(stack, count, 32)
    return [row("end-to-end chat jobs/s", figure, baseline, "jobs/s", target=">= 0.4x",
                passed=figure / baseline >= 0.4,
                setup=f"{CPUS} CPUs; {latency_ms} ms upstream; worker threads x32; "
                      f"{count} jobs from 32 client threads; baseline noop on threads x32")]


def worker_pools(stack: BenchStack, count: int = 200, latency_ms: int = 200) -> list[dict]:
    """The pool choice: jobs/s and memory with an I/O-bound (200 ms) upstream."""
    stack.emulator.configure(latency_ms=latency_ms, jitter_ms=0)
    rows = []
    reference = None
    for pool, concurrency in (("threads", 32), ("prefork", 2), ("prefork", 8)):
        stack.start_worker(pool, concurrency)
        rate = _platform_jobs_per_second(stack, count, 32)
        rss = stack.rss_mb("worker")
        reference = reference or rate
        rows.append(row(f"worker pool {pool} -c {concurrency}", rate, reference, "jobs/s",
                        setup=f"{CPUS} CPUs; {latency_ms} ms upstream; {count} jobs; worker "
                              f"RSS {rss:.0f} MB"))
    return rows


def _submit_images(stack: BenchStack, count: int, duration_s: float) -> list[str]:
    token = stack.token()
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}

    def submit(index: int) -> list[str]:
        http = requests.Session()
        ids = []
        for i in range(index, count, 16):
            prompt = f"bench {i} [[emulator: duration_s={duration_s}; id={uuid.uuid4().hex}]]"
            response = http.post(f"{stack.web_url}/api/bailian/generation", headers=headers,
                                 json={"model": "wanx-v1", "prompt": prompt,
                                       "parameters": {"n": 1}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["data"]["id"])
        return ids

    return run_concurrently(submit, 16)


def _jobs(stack: BenchStack, ids: list[str]) -> list[Job]:
    with stack.database.session() as session:
        return list(session.scalars(select(Job).where(Job.id.in_(ids))))


def wanx_in_flight(stack: BenchStack, counts=(100, 1000), duration_s: float = 90.0
                   ) -> list[dict]:
    """Wanx tasks one worker process keeps in flight within the query budget: its CPU per
    task in flight, and the delay from upstream completion to the job turning terminal."""
    import psutil

    settings = stack.settings
    budget = settings.task_query_budget
    worker = stack.start_worker("threads", 32)
    rows = []
    for count in counts:
        stack.emulator.reset()
        ids = _submit_images(stack, count, duration_s)
        # Measure at steady state: every task submitted upstream, none finished yet.
        while sum(1 for j in _jobs(stack, ids) if j.upstream_task_id) < count:
            time.sleep(0.5)
        process = psutil.Process(worker.pid)
        queries_start = stack.emulator.stats()["requests"].get("task_get", 0)
        window_start = time.perf_counter()
        cpu_start = sum(process.cpu_times()[:2])
        time.sleep(15.0)
        cpu = sum(process.cpu_times()[:2]) - cpu_start
        window = time.perf_counter() - window_start
        queries = stack.emulator.stats()["requests"].get("task_get", 0) - queries_start
        in_flight = sum(1 for t in stack.emulator.tasks().values() if t["status"] == "RUNNING")
        while True:
            finished = [j for j in _jobs(stack, ids) if j.status.is_terminal]
            if len(finished) == count:
                break
            time.sleep(1)
        tasks = stack.emulator.tasks()
        delays = [j.finished_at.replace(tzinfo=dt.UTC).timestamp()
                  - tasks[j.upstream_task_id]["ended"] for j in finished]
        max_qps = stack.emulator.stats()["max_task_queries_per_second"]
        # The longest interval a task can be given (common.images.ImageJobs._interval).
        nominal = min(max(settings.image_poll_backoff[-1], count / (budget * 0.8)),
                      settings.image_poll_max_interval)
        longest_interval = nominal * 1.1
        setup = (f"{CPUS} CPUs; 1 worker process (threads x32); {count} tasks of "
                 f"{duration_s:g}s; budget {budget:g} queries/s")
        summary = summary_ms(delays)
        rss = stack.rss_mb("worker")
        rows += [
            row(f"wanx {count} in flight: peak task queries/s", max_qps, budget, "q/s",
                target=f"<= {budget:g}", passed=max_qps <= budget, setup=setup),
            row(f"wanx {count} in flight: worker CPU per task", 1000 * cpu / window / in_flight,
                None, "ms CPU/s", setup=f"{setup}; {in_flight} running while measured; "
                                        f"worker at {100 * cpu / window:.0f}% of a core, "
                                        f"RSS {rss:.0f} MB, "
                                        f"{1000 * cpu / max(1, queries):.1f} ms CPU per poll"),
            row(f"wanx {count}: completion -> terminal p50", summary["p50"] / 1000,
                longest_interval, "s", target="<= 1 poll interval",
                passed=summary["p50"] / 1000 <= longest_interval, setup=setup),
            row(f"wanx {count}: completion -> terminal p95", summary["p95"] / 1000,
                longest_interval, "s", target="<= 1 poll interval",
                passed=summary["p95"] / 1000 <= longest_interval, setup=setup),
        ]
    return rows


def rate_limit_overhead(stack: BenchStack, requests_per_side: int = 400) -> list[dict]:
    """Latency the per-tier limit check adds: the same endpoint with limits on and off, served
    the same way, requests interleaved so both sides see the same machine."""
    import json

    unlimited = json.dumps({endpoint: {tier: "1000000/minute" for tier in
                                       ("default", "premium", "admin")}
                            for endpoint in ("chat", "generation")})
    stack.stop("worker")
    on = stack.start_web("web-limits-on", RATE_LIMITS=unlimited)
    off = stack.start_web("web-limits-off", RATE_LIMITS_ENABLED="false")
    token = stack.token()
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}
    body = {"model": "qwen-turbo", "messages": _messages("limit")}
    http = requests.Session()
    timings = {on: [], off: []}
    for i in range(requests_per_side + 20):
        for url in (on, off) if i % 2 else (off, on):
            started = time.perf_counter()
            response = http.post(f"{url}{CHAT}", json=body, headers=headers)
            elapsed = time.perf_counter() - started
            assert response.status_code == 202, response.text
            if i >= 20:
                timings[url].append(elapsed)
    stack.stop("web-limits-on")
    stack.stop("web-limits-off")
    stack.purge_broker()
    with_limits, without = summary_ms(timings[on]), summary_ms(timings[off])
    setup = (f"{CPUS} CPUs; async chat submit; two gunicorn {WEB_MODEL} "
             f"servers (limits on / off), {requests_per_side} interleaved sequential requests "
             f"each")
    rows = [row(f"rate limit: added request latency {q}", with_limits[q] - without[q],
                without[q], "ms", ratio=with_limits[q] / without[q], setup=setup)
            for q in ("p50", "p99")]
    # The check itself, without HTTP noise: one window hit against a bare Redis round trip.
    import redis as redis_lib

    from common.infra.sliding_window import SlidingWindow

    client = redis_lib.Redis.from_url(stack.env["REDIS_URL"])
    window = SlidingWindow(client)
    hits, pings = [], []
    for i in range(3000):
        started = time.perf_counter()
        window.hit(f"bench:rl:{i % 50}", 1000, 60)
        hits.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.ping()
        pings.append(time.perf_counter() - started)
    hit, ping = summary_ms(hits), summary_ms(pings)
    rows += [row(f"rate limit: window check {q}", hit[q], ping[q], "ms",
                 target="p99 < 2 ms" if q == "p99" else "",
                 passed=hit[q] < 2.0 if q == "p99" else None,
                 setup="one Lua call on the shared Redis vs a PING, 3000 each, 50 keys")
             for q in ("p50", "p99")]
    return rows


def jobs_api_at_scale(stack: BenchStack, small: int = 10_000, large: int = 1_000_000,
                      requests_per_side: int = 400) -> list[dict]:
    """GET /api/jobs/<id> and GET /api/jobs against 10k and 1M job rows: two databases, two
    web servers, requests interleaved so both sides see the same machine."""
    from bench.seed import seed_history

    sides = {}
    for label, rows in (("small", small), ("large", large)):
        print(f"  seeding {rows:,} jobs ...", file=sys.stderr, flush=True)
        sides[label] = seed_history(stack, label, rows)
    headers = {"Authorization": f"Bearer {sides['small'].token}"}
    http = requests.Session()
    kinds = {
        "GET /api/jobs/<id>": lambda side, i: f"/api/jobs/{side.job_ids[i % len(side.job_ids)]}",
        "GET /api/jobs": lambda side, i: "/api/jobs?limit=20",
        "GET /api/jobs?status=failed": lambda side, i: "/api/jobs?status=failed&limit=20",
        "GET /api/jobs?cursor=<middle>": lambda side, i: f"/api/jobs?limit=20&cursor="
                                                           f"{side.middle_cursor}",
    }
    rows = []
    for kind, path_of in kinds.items():
        timings = {"small": [], "large": []}
        for i in range(requests_per_side + 30):
            for label in ("small", "large") if i % 2 else ("large", "small"):
                started = time.perf_counter()
                response = http.get(f"{sides[label].url}{path_of(sides[label], i)}",
                                    headers=headers)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if i >= 30:
                    timings[label].append(elapsed)
        at_small, at_large = summary_ms(timings["small"]), summary_ms(timings["large"])
        rows.append(row(f"{kind} p95 at {large:,} rows", at_large["p95"], at_small["p95"], "ms",
                        target="<= 1.2x", passed=at_large["p95"] <= 1.2 * at_small["p95"],
                        setup=f"{CPUS} CPUs; baseline: the same at {small:,} rows; the caller "
                              f"owns 1% of the rows; two gunicorn {WEB_MODEL} "
                              f"servers, {requests_per_side} interleaved sequential requests "
                              f"each; p50 {at_large['p50']:.2f} vs {at_small['p50']:.2f} ms"))
    return rows


def peak_memory(stack: BenchStack) -> list[dict]:
    """The largest resident set one process reached during every scenario of this run."""
    peaks = stack.memory.peaks_mb
    targets = {"web": 150, "worker": 200}
    return [row(f"peak RSS: one {stack.memory.ROLES[role]}", peaks[role], None, "MB",
                target=f"<= {targets[role]} MB", passed=peaks[role] <= targets[role],
                setup="sampled twice a second through the scenarios run before it (run it "
                      "last)")
            for role in ("web", "worker") if role in peaks]


def _unlimited_rates() -> str:
    import json

    return json.dumps({endpoint: {tier: "1000000/minute" for tier in
                                  ("default", "premium", "admin")}
                       for endpoint in ("chat", "generation")})


def _hold(stack: BenchStack, model: str, holds: int, upstream_ms: int, ramp_s: float,
          client_timeout: float) -> dict:
    """`holds` sync chats with a slow upstream against one gunicorn of `model`, while a
    prober asks for /health and /api/auth/me twice a second: requests in flight (jobs the web
    created minus responses it gave), probe latency, RSS of each web worker process."""
    import contextlib
    import threading

    import psutil

    env = {"WEB_WORKER_CLASS": model, "RATE_LIMITS": _unlimited_rates(),
           # gunicorn's default worker_connections, as the platform had it with gthread.
           "WEB_WORKER_CONNECTIONS": "1000" if model == "gthread" else "2000"}
    name = f"web-{model}"
    url = stack.start_web(name, **env)
    stack.purge_broker()
    stack.emulator.configure(latency_ms=upstream_ms, jitter_ms=0)
    stack.start_worker("threads", 32)
    token = stack.token()
    headers = {"Authorization": f"Bearer {token}"}
    workers = [psutil.Process(pid) for pid in stack.procs[name].children()]

    def job_count() -> int:
        with stack.database.session() as session:
            return session.scalar(select(func.count()).select_from(Job))

    jobs_before = job_count()
    answered = {"count": 0}
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def client(index: int) -> list:
        time.sleep(ramp_s * index / holds)
        body = {"model": "qwen-turbo", "messages": _messages(f"hold {model} {index}")}
        try:
            response = requests.post(f"{url}{CHAT}", json=body, headers=headers,
                                     timeout=client_timeout)
            status = str(response.status_code)
        except requests.RequestException as exc:
            status = type(exc).__name__
        with lock:
            answered["count"] += 1
            statuses[status] = statuses.get(status, 0) + 1
        return []

    probes: dict[str, list[float]] = {"/health": [], "/api/auth/me": []}
    probe_failures = {"count": 0}
    samples: list[tuple[float, int]] = []
    rss_mb = {w.pid: 0.0 for w in workers}
    done = threading.Event()

    def prober() -> None:
        http = requests.Session()
        while not done.wait(0.5):
            for path in probes:
                started = time.perf_counter()
                try:
                    response = http.get(f"{url}{path}", headers=headers, timeout=client_timeout)
                    ok = response.status_code == 200
                except requests.RequestException:
                    ok = False
                elapsed = time.perf_counter() - started
                if ok:
                    probes[path].append(elapsed)
                else:
                    probe_failures["count"] += 1
                    probes[path].append(elapsed)

    def sampler() -> None:
        started = time.monotonic()
        while not done.wait(1.0):
            in_flight = job_count() - jobs_before - answered["count"]
            samples.append((time.monotonic() - started, in_flight))
            for worker in workers:
                with contextlib.suppress(psutil.Error):
                    rss_mb[worker.pid] = max(rss_mb[worker.pid],
                                             worker.memory_info().rss / 2**20)

    threads = [threading.Thread(target=prober), threading.Thread(target=sampler)]
    cpu_before = stack.cpu_seconds(name)
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(holds)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = stack.cpu_seconds(name) - cpu_before
    done.set()
    for thread in threads:
        thread.join()
    stack.stop(name)
    stack.stop("worker")
    stack.purge_broker()
    stack.emulator.configure(latency_ms=0, jitter_ms=0)
    with stack.database.session() as session:
        session.execute(update(Job).where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
                        .values(status=JobStatus.CANCELED))
        session.commit()
    return {"in_flight": max((n for _, n in samples), default=0), "samples": samples,
            "probes": {path: summary_ms(times) for path, times in probes.items()},
            "probe_failures": probe_failures["count"], "statuses": statuses,
            "rss_mb": sorted(rss_mb.values()), "elapsed_s": elapsed, "cpu_s": cpu}


def _sync_path_per_model(stack: BenchStack, models: tuple[str, ...], requests_per_side: int,
                         block: int = 25) -> list[dict]:
    """The ordinary sync chat (fast upstream), one client, on one gunicorn per model: blocks
    of sequential requests alternate between the servers, so a busier minute of the machine
    slows each alike; web CPU is counted per server over its own blocks."""
    stack.emulator.configure(latency_ms=0, jitter_ms=0)
    stack.start_worker("threads", 32)
    token = stack.token()
    headers = {"Authorization": f"Bearer {token}"}
    urls = {model: stack.start_web(f"web-sync-{model}", WEB_WORKER_CLASS=model,
                                   RATE_LIMITS=_unlimited_rates()) for model in models}
    sessions = {model: requests.Session() for model in models}
    timings: dict[str, list[float]] = {model: [] for model in models}
    meter = _CpuMeter(stack)

    def run(model: str, count: int) -> list[float]:
        times = []
        for _ in range(count):
            body = {"model": "qwen-turbo", "messages": _messages(uuid.uuid4().hex)}
            started = time.perf_counter()
            response = sessions[model].post(f"{urls[model]}{CHAT}", json=body, headers=headers)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        return times

    for model in models:
        run(model, 20)  # warm connections and caches first
    for i in range(requests_per_side // block):
        for model in models if i % 2 else models[::-1]:
            timings[model] += meter.measure((f"web-sync-{model}",),
                                            lambda m=model: run(m, block))
    rows = []
    for model in models:
        stack.stop(f"web-sync-{model}")
        summary = summary_ms(timings[model])
        setup = (f"{CPUS} CPUs; gunicorn 2 processes, {model}; 1 client, {summary['n']} "
                 f"sequential sync chats in blocks of {block}, alternating between the models")
        rows += [row(f"serving {model}: sync chat {q}", summary[q], None, "ms", setup=setup)
                 for q in ("p50", "p99")]
        rows.append(row(f"serving {model}: web CPU per sync chat",
                        meter.spent[f"web-sync-{model}"] * 1000 / summary["n"], None, "ms",
                        setup=setup))
    stack.stop("worker")
    return rows


def serving_model(stack: BenchStack, holds: int = 1000, upstream_ms: int = 20_000,
                  ramp_s: float = 5.0, requests_per_side: int = 300) -> list[dict]:
    """The web serving model, by measurement, gthread (2 processes x 16 threads, as it was)
    against gevent (2 processes, 2000 connections each): the ordinary sync chat's latency and
    web CPU, then `holds` concurrent sync chats whose upstream answer takes `upstream_ms`
    (each held by the web up to SYNC_WAIT_SECONDS) while small requests are timed."""
    models = ("gthread", "gevent")
    rows = _sync_path_per_model(stack, models, requests_per_side)
    client_timeout = float(stack.env.get("SYNC_WAIT_SECONDS", "25")) + 20
    for model in models:
        print(f"  {holds} held requests on {model} ...", file=sys.stderr, flush=True)
        result = _hold(stack, model, holds, upstream_ms, ramp_s, client_timeout)
        setup = (f"{CPUS} CPUs; gunicorn 2 processes, {model}; {holds} sync chats ramped over "
                 f"{ramp_s:g}s, upstream {upstream_ms / 1000:g}s, SYNC_WAIT_SECONDS "
                 f"{stack.env.get('SYNC_WAIT_SECONDS')}; worker threads x32; answers "
                 f"{result['statuses']}; {result['elapsed_s']:.0f}s until all answered or "
                 f"timed out ({client_timeout:g}s); web CPU {result['cpu_s']:.1f}s")
        rows.append(row(f"serving {model}: requests in flight (peak)", result["in_flight"],
                        holds, "requests", target=f">= {holds}" if model != "gthread" else "",
                        passed=result["in_flight"] >= holds if model != "gthread" else None,
                        setup=setup))
        for path, summary in result["probes"].items():
            for q in ("p50", "p99"):
                rows.append(row(f"serving {model}: GET {path} while held {q}", summary[q],
                                None, "ms", setup=f"{summary['n']} probes, every 0.5 s; "
                                                  f"failures {result['probe_failures']}"))
        rows.append(row(f"serving {model}: RSS per web process (max)", max(result["rss_mb"]),
                        None, "MB", setup=f"each process's peak: "
                                          f"{', '.join(f'{r:.0f}' for r in result['rss_mb'])}"))
    return rows


SCENARIOS = {
    "sync": sync_chat_overhead,
    "submit": async_submit_throughput,
    "e2e": end_to_end_jobs,
    "pools": worker_pools,
    "wanx": wanx_in_flight,
    "ratelimit": rate_limit_overhead,
    "jobs": jobs_api_at_scale,
    "serving_model": serving_model,
    "streaming_latency": streaming_latency,
    "open_streams": open_streams,
    "console": console_pages,
    "memory": peak_memory,  # last: it reports the peaks of the scenarios before it
}


# --- webhook_delivery ------------------------------------------------------------------------
# Self-contained (its imports are its own): the delivery latency of signed webhooks, from the
# job's terminal transition to the receiver's 200, and the worker CPU a delivery adds per job.

def _webhook_batch(stack: BenchStack, token: str, count: int, url: str | None) -> list[str]:
    """Submit `count` async chat jobs (with a webhook when `url`) as fast as 16 clients can."""
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}
    extra = {"webhook": url} if url else {}

    def submit(index: int) -> list[str]:
        http = requests.Session()
        ids = []
        for i in range(index, count, 16):
            response = http.post(f"{stack.web_url}{CHAT}", headers=headers, json={
                "model": "qwen-turbo", "messages": _messages(f"hook {i}"), **extra})
            assert response.status_code == 202, response.text
            ids.append(response.json()["data"]["id"])
        return ids

    return run_concurrently(submit, 16)


def _wait_webhook_batch(stack: BenchStack, ids: list[str], hooked: bool) -> None:
    from common.webhooks.models import DeliveryStatus, WebhookDelivery

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with stack.database.session() as session:
            if hooked:
                done = session.scalar(select(func.count()).select_from(WebhookDelivery).where(
                    WebhookDelivery.job_id.in_(ids),
                    WebhookDelivery.status == DeliveryStatus.DELIVERED))
            else:
                done = session.scalar(select(func.count()).select_from(Job).where(
                    Job.id.in_(ids), Job.status == JobStatus.SUCCEEDED))
        if done == len(ids):
            return
        time.sleep(0.05)
    with stack.database.session() as session:
        jobs = dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all())
        rows = session.execute(select(WebhookDelivery.job_id, WebhookDelivery.status,
                                      WebhookDelivery.next_attempt_at,
                                      WebhookDelivery.published_at)
                               .where(WebhookDelivery.job_id.in_(ids),
                                      WebhookDelivery.status != DeliveryStatus.DELIVERED)
                               ).all()
    undone = [(job_id, status) for job_id, status in jobs.items()
              if status != JobStatus.SUCCEEDED]
    raise TimeoutError(f"the batch did not finish (or deliver) in 120 s: jobs {undone[:5]}, "
                       f"deliveries {rows[:5]}")


def webhook_delivery(stack: BenchStack, count: int = 100, rounds: int = 3,
                     latency_ms: int = 1000, threads: int = 128) -> list[dict]:
    """Signed webhooks for `count` chat jobs finishing within about a second (all in flight
    at once on a 1 s upstream, so they end as fast as they were submitted): latency from each
    job's terminal transition (its finished_at) to the receiver's 200, and the worker and
    MariaDB + Redis CPU per job against the same batch without webhooks, in alternating
    rounds."""
    from tests.support.webhook_receiver import WebhookReceiver

    stack.emulator.configure(latency_ms=latency_ms, jitter_ms=0)
    stack.start_worker("threads", threads)
    receiver = WebhookReceiver()
    token = stack.token()
    meter = _CpuMeter(stack)
    latencies: list[float] = []
    spans: list[float] = []
    cpu = {True: {"worker": 0.0, "servers": 0.0}, False: {"worker": 0.0, "servers": 0.0}}
    try:
        _wait_webhook_batch(stack, _webhook_batch(stack, token, 20, None), False)  # warm up
        for round_ in range(rounds):
            for hooked in (False, True):
                path = f"/bench/{round_}"
                url = receiver.url(path) if hooked else None
                before = {name: meter._now(name) for name in ("worker", "servers")}
                ids = _webhook_batch(stack, token, count, url)
                _wait_webhook_batch(stack, ids, hooked)
                for name in ("worker", "servers"):
                    cpu[hooked][name] += meter._now(name) - before[name]
                with stack.database.session() as session:
                    finished = dict(session.execute(select(Job.id, Job.finished_at)
                                                    .where(Job.id.in_(ids))).all())
                ends = [at.replace(tzinfo=dt.UTC).timestamp() for at in finished.values()]
                spans.append(max(ends) - min(ends))
                if hooked:
                    for delivery in receiver.at(path):
                        job_id = delivery.json()["id"]
                        latencies.append(delivery.at - finished[job_id].replace(
                            tzinfo=dt.UTC).timestamp())
    finally:
        receiver.close()
    stats = summary_ms(latencies)
    jobs = count * rounds
    extra_worker_ms = (cpu[True]["worker"] - cpu[False]["worker"]) / jobs * 1000
    extra_servers_ms = (cpu[True]["servers"] - cpu[False]["servers"]) / jobs * 1000
    setup = (f"{CPUS} CPUs; {rounds} rounds of {count} async chat jobs ({latency_ms} ms "
             f"upstream, worker threads x{threads}), each round finishing within "
             f"{max(spans):.2f} s; receiver on localhost")
    return [
        row("webhook: terminal transition -> receiver 200, p50", stats["p50"], None, "ms",
            setup=setup),
        row("webhook: terminal transition -> receiver 200, p95", stats["p95"], None, "ms",
            target="<= 2000 ms", passed=stats["p95"] <= 2000, setup=setup),
        row("webhook: extra worker CPU per job", extra_worker_ms,
            cpu[False]["worker"] / jobs * 1000, "ms",
            setup="baseline: the worker's CPU per job of the same batch without webhooks"),
        row("webhook: extra MariaDB + Redis CPU per job", extra_servers_ms,
            cpu[False]["servers"] / jobs * 1000, "ms",
            setup="baseline: the servers' CPU per job without webhooks"),
    ]


SCENARIOS["webhook_delivery"] = webhook_delivery


def key_budget_overhead(stack: BenchStack, requests_per_side: int = 400) -> list[dict]:
    """What an API key, its budget reservation and its tokens-per-minute check add to an async
    chat submit: the same endpoint on the same server, interleaved, with (a) a key of a
    default-tier user (the tier's budget and the key's own budget reserved, the key's rpm and
    tpm windows checked besides the tier's) and (b) an admin's JWT, which has no budget.
    Then the reservation alone, in-process: the submit transaction with and without it."""
    from decimal import Decimal

    from common.accounts import users
    from common.accounts.models import Role
    from common.billing.budgets import Budgets, Payer
    from common.infra.orm import utcnow
    from common.infra.settings import BudgetSpec
    from common.jobs import transitions
    from common.jobs.models import JobKind

    stack.stop("worker")  # submits only: nothing runs, every reservation stays held
    url = stack.web_url
    jwt_headers = {"Authorization": f"Bearer {stack.token('admin')}",
                   "Prefer": "respond-async"}
    login = {"Authorization": f"Bearer {stack.token('default')}"}
    created = requests.post(f"{url}/api/keys", headers=login, timeout=10, json={
        "name": "bench", "rpm_limit": 10**8, "tpm_limit": 10**8,
        "budget": {"amount": "100000", "period": "month"}})
    created.raise_for_status()
    key_headers = {"Authorization": f"Bearer {created.json()['data']['key']}",
                   "Prefer": "respond-async"}
    body = {"model": "qwen-turbo", "max_tokens": 64, "messages": _messages("key")}
    http = requests.Session()
    timings: dict[str, list[float]] = {"key": [], "jwt": []}
    for i in range(requests_per_side + 20):
        for side in ("key", "jwt") if i % 2 else ("jwt", "key"):
            headers = key_headers if side == "key" else jwt_headers
            started = time.perf_counter()
            response = http.post(f"{url}{CHAT}", json=body, headers=headers)
            elapsed = time.perf_counter() - started
            assert response.status_code == 202, response.text
            if i >= 20:
                timings[side].append(elapsed)
    stack.purge_broker()
    with_key, without = summary_ms(timings["key"]), summary_ms(timings["jwt"])
    setup = (f"{CPUS} CPUs; async chat submit, one gunicorn {WEB_MODEL} server; key of a "
             f"default-tier user (tier + key budgets, key rpm/tpm) vs an admin JWT (no "
             f"budget); {requests_per_side} interleaved sequential requests each")
    rows = [row(f"key + budget + TPM: added submit latency {q}", with_key[q] - without[q],
                without[q], "ms", ratio=with_key[q] / without[q], setup=setup)
            for q in ("p50", "p99")]

    # The reservation itself: one submit transaction (the job row) with and without it.
    settings = stack.settings
    budgets = Budgets(settings)
    username = f"bench_budget_{time.monotonic_ns()}"
    with stack.database.session() as session:
        user = users.create_user(session=session, username=username,
                                 password="bench-password", role=Role.DEFAULT)
        user.budget_amount, user.budget_period = Decimal(10**6), "month"
        user_id = user.id
    # As the web passes it: the user's budget comes with the (cached) state auth read.
    payer = Payer(user_id=user_id, role=Role.DEFAULT, user_budget=BudgetSpec(
        amount=Decimal(10**6), period="month"), user_budget_known=True)
    request = {"messages": _messages("budget"), "parameters": {"max_tokens": 64}}
    estimate = budgets.estimate(JobKind.CHAT, "qwen-turbo", request)
    samples: dict[bool, list[float]] = {True: [], False: []}
    checks: list[float] = []  # the check itself: plan + the reservation's statements
    for i in range(2 * 2000 + 40):
        reserving = bool(i % 2)
        job_id = str(uuid.uuid4())
        started = time.perf_counter()
        check = 0.0
        if reserving:
            plan = budgets.plan(stack.database, payer, estimate)
            check = time.perf_counter() - started
        with stack.database.transaction() as conn:
            now = utcnow()
            transitions.insert_job(conn, {
                "id": job_id, "user_id": user_id, "kind": JobKind.CHAT, "model": "qwen-turbo",
                "status": JobStatus.QUEUED, "request": request, "attempts": 0, "polls": 0,
                "idempotency_key": None, "request_fingerprint": "bench",
                "correlation_id": None, "created_at": now, "updated_at": now,
                "enqueued_at": now, "path": "dashscope", "compute_cost": Decimal(0),
                "deadline_at": now})
            if reserving:
                at = time.perf_counter()
                budgets.reserve(conn, job_id=job_id, plan=plan, now=now)
                check += time.perf_counter() - at
        if i >= 40:
            samples[reserving].append(time.perf_counter() - started)
            if reserving:
                checks.append(check)
    reserved, plain, own = (summary_ms(samples[True]), summary_ms(samples[False]),
                            summary_ms(checks))
    setup = ("one conditional counter update + the charge row, MariaDB on localhost, 2000 "
             "interleaved transactions each (the job row's insert and commit alone: baseline)")
    rows += [row(f"budget check: its own time in the submit transaction {q}", own[q],
                 plain[q], "ms", target="p99 < 2 ms" if q == "p99" else "",
                 passed=own[q] < 2.0 if q == "p99" else None, setup=setup)
             for q in ("p50", "p99")]
    rows += [row(f"budget check: submit transaction with it minus without {q}",
                 reserved[q] - plain[q], plain[q], "ms", setup=setup + "; the commit of a "
                 "bigger transaction included, so the noisiest figure")
             for q in ("p50", "p99")]
    return rows


SCENARIOS["key_budget_overhead"] = key_budget_overhead


# --- embeddings_overhead ---------------------------------------------------------------------
# What POST /v1/embeddings (in the request) adds over a direct `TextEmbedding.call` to the
# same emulator, in pairs (c=1 and c=16), with the web processes' CPU per request; and, in
# alternating blocks of the same run, what the job path costs: a /v1 chat completion (the same
# submit and finish transactions, plus the queue, a worker's claim and the wake-up) over its
# direct SDK call, and the bare Celery round trip under it. Embeddings run as jobs only if
# that costs at most 2 ms over a direct call.

def _embedding_pairs(url: str, headers: dict, api_base: str, dimension: int = 1024):
    from dashscope import TextEmbedding

    http = requests.Session()
    sdk_http = requests.Session()

    def run(count: int) -> list[tuple[float, float]]:
        samples = []
        for _ in range(count):
            text = f"benchmark text {uuid.uuid4().hex}"
            started = time.perf_counter()
            direct = TextEmbedding.call(model="text-embedding-v4", input=[text],
                                        dimension=dimension, api_key="sk-emulator-test-key",
                                        base_address=api_base, session=sdk_http)
            direct_s = time.perf_counter() - started
            assert direct.status_code == 200, direct
            started = time.perf_counter()
            response = http.post(url, headers=headers, json={
                "model": "text-embedding-v4", "input": [text], "dimensions": dimension,
                "encoding_format": "float"})
            through_s = time.perf_counter() - started
            assert response.status_code == 200, response.text
            samples.append((through_s, direct_s))
        return samples
    return run


def embeddings_overhead(stack: BenchStack, pairs: int = 400, concurrency: int = 16
                        ) -> list[dict]:
    stack.emulator.configure(latency_ms=0, jitter_ms=0)
    stack.start_worker("threads", 32)
    headers = {"Authorization": f"Bearer {stack.token()}"}
    platform = _embedding_pairs(f"{stack.web_url}/v1/embeddings", headers,
                                stack.emulator.api_base)
    chat_jobs = _pairs(f"{stack.web_url}/v1/chat/completions", headers, stack.emulator.api_base)
    stack.start_noop_worker("threads", 32)
    round_trips = _round_trips(_noop_app(stack))
    platform(20), chat_jobs(20), round_trips(20)  # warm connections and caches first
    meter = _CpuMeter(stack)
    sequential: list[tuple[float, float]] = []
    chats: list[tuple[float, float]] = []
    celery: list[float] = []
    for _ in range(pairs // 50):  # alternating blocks: a slow minute slows every side alike
        sequential += meter.measure(("web", "servers"), lambda: platform(50))
        chats += chat_jobs(50)
        celery += round_trips(50)
    stack.stop("noop-worker")
    web_cpu = {name: spent * 1000 / len(sequential) for name, spent in meter.spent.items()}
    per_thread = max(25, pairs // concurrency) + 10
    concurrent = run_concurrently(
        lambda _i: _embedding_pairs(f"{stack.web_url}/v1/embeddings", headers,
                                    stack.emulator.api_base)(per_thread)[10:], concurrency)
    rows = []
    for clients, samples in ((1, sequential), (concurrency, concurrent)):
        overhead = summary_ms([p - d for p, d in samples])
        through = summary_ms([p for p, _ in samples])
        direct = summary_ms([d for _, d in samples])
        for q in ("p50", "p99"):
            rows.append(row(f"embeddings overhead (in the request) c={clients} {q}",
                            overhead[q], direct[q], "ms", ratio=through[q] / direct[q],
                            setup=f"{CPUS} CPUs; gunicorn {WEB_MODEL}; text-embedding-v4, 1 "
                                  f"text, 1024 floats; {clients} client thread(s), each a "
                                  f"direct TextEmbedding.call then POST /v1/embeddings; "
                                  f"{overhead['n']} pairs; baseline: the direct call"))
    rows += [row("embeddings c=1 CPU per request: web processes", web_cpu["web"], None, "ms",
                 setup="gunicorn arbiter + workers, during the c=1 embedding blocks (the "
                       "DashScope SDK call included)"),
             row("embeddings c=1 CPU per request: MariaDB + Redis", web_cpu["servers"], None,
                 "ms", setup="the machine's mariadbd and redis-server, same blocks")]
    chat = summary_ms([p - d for p, d in chats])
    for q in ("p50", "p99"):
        rows.append(row(f"job path: /v1 chat completion overhead c=1 {q}", chat[q], None, "ms",
                        setup=f"{CPUS} CPUs; worker threads x32; qwen-turbo through the queue, "
                              f"minus its direct Generation.call; {chat['n']} pairs in blocks "
                              "alternating with the embedding pairs"))
    floor = summary_ms(celery)
    for q in ("p50", "p99"):
        rows.append(row(f"embeddings as a job would add at least (Celery round trip) c=1 {q}",
                        floor[q], None, "ms", target="<= 2 ms to run as jobs",
                        passed=floor[q] <= 2.0,
                        setup=f"{CPUS} CPUs; send_task + result.get(), no-op task on threads "
                              f"x32; {floor['n']} sequential, in blocks alternating with the "
                              "c=1 pairs"))
    return rows


SCENARIOS["embeddings_overhead"] = embeddings_overhead
def _submit_media(stack: BenchStack, images: int, videos: int, image_s: float,
                  video_s: float, video_kb: int) -> tuple[list[str], list[str]]:
    """`images` text-to-image and `videos` text-to-video jobs, async, from 16 clients."""
    headers = {"Authorization": f"Bearer {stack.token()}", "Prefer": "respond-async"}
    plan = [("image", i) for i in range(images)] + [("video", i) for i in range(videos)]

    def submit(index: int) -> list[tuple[str, str]]:
        http = requests.Session()
        ids = []
        for kind, i in plan[index::16]:
            tag = f"id={uuid.uuid4().hex}"
            if kind == "image":
                url, body = "/api/bailian/generation", {
                    "model": "wanx-v1", "parameters": {"n": 1},
                    "prompt": f"bench {i} [[emulator: duration_s={image_s}; {tag}]]"}
            else:
                knobs = f"duration_s={video_s}; video_kb={video_kb}; {tag}"
                url, body = "/api/bailian/video", {
                    "model": "wan2.2-t2v-plus", "prompt": f"film {i} [[emulator: {knobs}]]"}
            response = http.post(f"{stack.web_url}{url}", headers=headers, json=body)
            assert response.status_code == 202, response.text
            ids.append((kind, response.json()["data"]["id"]))
        return ids

    submitted = run_concurrently(submit, 16)
    return ([i for kind, i in submitted if kind == "image"],
            [i for kind, i in submitted if kind == "video"])


def media_in_flight(stack: BenchStack, images: int = 200, videos: int = 50,
                    image_s: float = 40.0, video_s: float = 60.0, video_kb: int = 32768
                    ) -> list[dict]:
    """200 image and 50 video tasks in flight together on one worker: the query budget they
    share, completion -> terminal against each kind's poll interval, worker CPU per task, and
    the worker's peak RSS while it streams the MP4s (32 MiB each) into storage: held whole,
    a single copy would add 32 MiB, and up to 32 run at once."""
    import threading

    import psutil

    settings = stack.settings
    budget = settings.task_query_budget
    worker = stack.start_worker("threads", 32)
    stack.emulator.reset()
    image_ids, video_ids = _submit_media(stack, images, videos, image_s, video_s, video_kb)
    ids = image_ids + video_ids
    count = len(ids)
    while sum(1 for j in _jobs(stack, ids) if j.upstream_task_id) < count:
        time.sleep(0.5)
    process = psutil.Process(worker.pid)
    rss_before = process.memory_info().rss / 2**20
    queries_start = stack.emulator.stats()["requests"].get("task_get", 0)
    window_start, cpu_start = time.perf_counter(), sum(process.cpu_times()[:2])
    time.sleep(15.0)
    cpu = sum(process.cpu_times()[:2]) - cpu_start
    window = time.perf_counter() - window_start
    queries = stack.emulator.stats()["requests"].get("task_get", 0) - queries_start
    in_flight = sum(1 for t in stack.emulator.tasks().values() if t["status"] == "RUNNING")

    peak = {"rss": rss_before}
    done = threading.Event()

    def sample() -> None:  # the copies run while the videos finish: sample throughout
        while not done.wait(0.1):
            with contextlib.suppress(psutil.Error):
                peak["rss"] = max(peak["rss"], process.memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    while True:
        jobs = _jobs(stack, ids)
        stored = sum(1 for j in jobs if j.id in set(video_ids) and j.result
                     and j.result["output"]["video"].get("stored"))
        if all(j.status.is_terminal for j in jobs) and stored == len(video_ids):
            break
        time.sleep(1)
    done.set()
    sampler.join()
    tasks = stack.emulator.tasks()
    max_qps = stack.emulator.stats()["max_task_queries_per_second"]
    setup = (f"{CPUS} CPUs; 1 worker process (threads x32); {images} images of {image_s:g}s + "
             f"{videos} videos of {video_s:g}s ({video_kb // 1024} MiB MP4s); budget "
             f"{budget:g} queries/s")
    rows = [row("media 200+50 in flight: peak task queries/s", max_qps, budget, "q/s",
                target=f"<= {budget:g}", passed=max_qps <= budget, setup=setup),
            row("media 200+50 in flight: worker CPU per task", 1000 * cpu / window / in_flight,
                None, "ms CPU/s", setup=f"{setup}; {in_flight} running while measured; "
                                        f"worker at {100 * cpu / window:.0f}% of a core, "
                                        f"{1000 * cpu / max(1, queries):.1f} ms CPU per poll")]
    for kind, kind_ids, backoff in (("image", image_ids, settings.image_poll_backoff),
                                    ("video", video_ids, settings.video_poll_backoff)):
        finished = _jobs(stack, kind_ids)
        delays = [j.finished_at.replace(tzinfo=dt.UTC).timestamp()
                  - tasks[j.upstream_task_id]["ended"] for j in finished]
        # The longest interval a task can be given (common.jobs.tasks.TaskJobs._interval).
        interval = min(max(backoff[-1], count / (budget * 0.8)),
                       settings.image_poll_max_interval) * 1.1
        summary = summary_ms(delays)
        for quantile in ("p50", "p95"):
            figure = summary[quantile] / 1000
            rows.append(row(f"media {kind}: completion -> terminal {quantile}", figure,
                            interval, "s", target="<= 1 poll interval",
                            passed=figure <= interval, setup=setup))
    rows.append(row("media: worker peak RSS while copying videos", peak["rss"], rss_before,
                    "MB", target=f"< before + one MP4 ({video_kb // 1024} MiB)",
                    passed=peak["rss"] - rss_before < video_kb / 1024,
                    setup=f"{setup}; RSS before the copies {rss_before:.0f} MB"))
    return rows


SCENARIOS["media"] = media_in_flight
