"""python -m bench [scenario ...] — run benchmarks, print a Markdown table, write JSON.

Starts everything it needs (a fresh MariaDB database, Redis databases 13-15, the emulator, the
platform and the bare baselines) and measures each figure beside its baseline in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

from bench.scenarios import SCENARIOS
from bench.stack import BenchStack

RESULTS = Path(__file__).resolve().parent / "results"


def markdown(rows: list[dict]) -> str:
    lines = ["| scenario | figure | baseline | ratio | target | pass | setup |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = {True: "pass", False: "FAIL", None: ""}[r["pass"]]
        baseline = "" if r["baseline"] is None else f"{r['baseline']} {r['unit']}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']}x"
        lines.append(f"| {r['scenario']} | {r['figure']} {r['unit']} | {baseline} | {ratio} | "
                     f"{r['target']} | {verdict} | {r['setup']} |")
    return "\n".join(lines)


def raise_open_file_limit(wanted: int = 65536) -> None:
    """Open-stream scenarios hold thousands of sockets in this process, the emulator, the web
    processes and the worker, which inherit this limit: raise the soft limit to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*", help=f"any of: {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    chosen = args.scenarios or list(SCENARIOS)
    logging.basicConfig(level=logging.WARNING)
    raise_open_file_limit()
    rows: list[dict] = []
    with BenchStack() as stack:
        stack.start_web()
        for name in chosen:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows += SCENARIOS[name](stack)
    table = markdown(rows)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    payload = {"cpus": os.cpu_count(), "at": stamp, "rows": rows}
    for path in (RESULTS / f"bench-{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(payload, indent=2))
    print(f"\nJSON: {RESULTS / 'latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
