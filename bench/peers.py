"""Peers the platform is measured against: LiteLLM's proxy, in a virtualenv of its own.

LiteLLM is a bench-only dependency (bench/litellm/requirements.txt), never in the platform's
requirements: the bench creates `var/bench-litellm-venv` on first use (python -m venv, then
pip install -r) and starts `litellm` on a free port in front of the emulator's compatible mode,
with no database and nothing that phones home, and the stack stops it at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.support import processes

REPO = Path(__file__).resolve().parent.parent
LITELLM_REQUIREMENTS = REPO / "bench" / "litellm" / "requirements.txt"
LITELLM_VENV = REPO / "var" / "bench-litellm-venv"
LITELLM_MODEL = "qwen-turbo"
LITELLM_WORKERS = 2  # as many processes as the platform's gunicorn (bench.stack.WEB_WORKERS)

# Everything LiteLLM would otherwise fetch from the internet or send out at startup or per
# request: telemetry, the model cost map, blog posts, header and preset tables.
QUIET_ENV = {
    "LITELLM_TELEMETRY_DISABLED": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "LITELLM_LOG": "ERROR",
    "NO_PROXY": "127.0.0.1,localhost",
}


def litellm_bin() -> Path:
    """The venv's `litellm`, creating the venv from the pinned requirements if missing."""
    binary = LITELLM_VENV / "bin" / "litellm"
    stamp = LITELLM_VENV / ".requirements"
    wanted = LITELLM_REQUIREMENTS.read_text()
    if binary.exists() and stamp.exists() and stamp.read_text() == wanted:
        return binary
    print(f"  creating {LITELLM_VENV} from {LITELLM_REQUIREMENTS.name} (minutes) ...",
          file=sys.stderr, flush=True)
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "-r", str(LITELLM_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return binary


def litellm_version() -> str:
    for line in LITELLM_REQUIREMENTS.read_text().splitlines():
        if line.startswith("litellm[proxy]=="):
            return line.split("==", 1)[1].strip()
    return "?"


def litellm_config(compatible_base: str, api_key: str, master_key: str) -> str:
    """One model routed to the emulator's compatible mode; no database, no callbacks; a
    master key (it refuses to start without one), which clients send as their bearer token,
    as they send their access token to the platform."""
    return (
        "model_list:\n"
        f"  - model_name: {LITELLM_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{LITELLM_MODEL}\n"
        f"      api_base: {compatible_base}\n"
        f"      api_key: {api_key}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "  set_verbose: false\n"
        "general_settings:\n"
        f"  master_key: {master_key}\n"
        "  disable_spend_logs: true\n"
        "  disable_error_logs: true\n"
    )


def start_litellm(log_dir: Path, compatible_base: str, api_key: str,
                  workers: int = LITELLM_WORKERS) -> tuple[processes.Process, str, str]:
    """Start LiteLLM's proxy on a free port; returns the process, its base URL and the
    master key to call it with."""
    binary = litellm_bin()
    config = log_dir / "litellm.yaml"
    master_key = f"sk-bench-{secrets.token_hex(16)}"
    config.write_text(litellm_config(compatible_base, api_key, master_key))
    port = processes.free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT")
           and not k.lower().endswith("_proxy")}
    env.update(QUIET_ENV)
    proc = processes.Process(
        "litellm", [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port",
                    str(port), "--num_workers", str(workers)], env, log_dir).start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_for_http(f"{url}/health/liveliness", timeout=180)
    return proc, url, master_key
