"""What a worker and Flower expose: loopback unless told otherwise, and a metrics port per
worker from the settings, where a port already taken stops the second worker at start."""

from __future__ import annotations

import requests

from tests.support import processes

# Every 127/8 address reaches the loopback interface on Linux, but a socket bound to 127.0.0.1
# answers only there; one bound to 0.0.0.0 answers on 127.0.0.2 too.
OTHER_ADDRESS = "127.0.0.2"


def _answers(host: str, port: int, path: str = "/metrics") -> bool:
    try:
        requests.get(f"http://{host}:{port}{path}", timeout=2)
    except requests.ConnectionError:
        return False
    return True


def _metrics(port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def test_a_second_worker_on_a_taken_metrics_port_stops_naming_the_setting(base_env, log_dir):
    port = processes.free_port()
    first = processes.worker(base_env, log_dir, name="metrics-first", metrics_port=port)
    clash = second = None
    try:
        assert "celery_queue_length" in _metrics(port)
        assert not _answers(OTHER_ADDRESS, port)  # WORKER_METRICS_ADDRESS defaults to loopback

        clash = processes.Process("metrics-clash", processes.worker_argv("metrics-clash"),
                                  {**base_env, "WORKER_METRICS_PORT": str(port)}, log_dir).start()
        assert clash.popen.wait(timeout=60) == 1
        assert f"WORKER_METRICS_PORT {port}" in clash.log()
        assert "ready." not in clash.log()  # it never consumed anything without metrics

        # The same host, its own port from the settings, and a wildcard address: both serve.
        other_port = processes.free_port()
        second = processes.worker({**base_env, "WORKER_METRICS_ADDRESS": "0.0.0.0"}, log_dir,
                                  name="metrics-second", metrics_port=other_port)
        assert "celery_queue_length" in _metrics(other_port)
        assert _answers(OTHER_ADDRESS, other_port)
        assert "celery_queue_length" in _metrics(port)
    finally:
        for proc in (first, clash, second):
            if proc is not None:
                proc.stop()


def test_flower_listens_on_loopback_by_default(base_env, log_dir):
    port = processes.free_port()
    env = {**base_env, "FLOWER_BASIC_AUTH": "operator:" + "f" * 24}
    flower = processes.Process("flower", [str(processes.BIN / "celery"), "-A",
                                          "worker.celery_app", "flower", f"--port={port}"],
                               env, log_dir).start()
    try:
        flower.wait_for_http(f"http://127.0.0.1:{port}/healthcheck")
        assert not _answers(OTHER_ADDRESS, port, "/healthcheck")
    finally:
        flower.stop()


def test_a_prefork_worker_without_a_multiprocess_dir_stops_at_start(base_env, log_dir):
    env = {k: v for k, v in base_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["WORKER_METRICS_PORT"] = str(processes.free_port())
    proc = processes.Process("prefork-no-dir", processes.worker_argv(
        "prefork-no-dir", pool="prefork", concurrency=1), env, log_dir).start()
    try:
        assert proc.popen.wait(timeout=60) == 1
        assert "PROMETHEUS_MULTIPROC_DIR" in proc.log()
        assert "ready." not in proc.log()
    finally:
        proc.stop()
