"""python -m emulator --host 127.0.0.1 --port 8089 [--api-key ...] [--latency-ms ...]"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from emulator.server import create_app
from emulator.state import Config


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=os.environ.get("EMULATOR_API_KEY", "sk-emulator"))
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--chunk-interval-ms", type=float, default=0.0,
                        help="pause between stream events")
    parser.add_argument("--rate-limit-rps", type=float, default=0.0)
    parser.add_argument("--image-duration", type=float, default=2.0, help="seconds per task")
    parser.add_argument("--image-pending", type=float, default=0.0, help="seconds queued")
    parser.add_argument("--image-concurrency", type=int, default=0, help="per model, 0=inf")
    parser.add_argument("--image-submit-qps", type=float, default=0.0, help="per model, 0=inf")
    parser.add_argument("--task-ttl", type=float, default=24 * 3600)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = Config(api_key=args.api_key, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                    chunk_interval_ms=args.chunk_interval_ms,
                    rate_limit_rps=args.rate_limit_rps, image_duration_s=args.image_duration,
                    image_pending_s=args.image_pending,
                    image_concurrency=args.image_concurrency,
                    image_submit_qps=args.image_submit_qps, task_ttl_s=args.task_ttl,
                    seed=args.seed)
    logging.basicConfig(level=logging.WARNING)
    # shutdown_timeout: do not wait for requests deliberately hung by a `fault=hang` knob.
    web.run_app(create_app(config), host=args.host, port=args.port, access_log=None,
                shutdown_timeout=1.0,
                print=lambda _msg: print(f"emulator listening on http://{args.host}:{args.port}",  # noqa: T201
                                         flush=True))


if __name__ == "__main__":
    main()
