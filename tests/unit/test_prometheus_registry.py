"""The registry a scrape reads (common/infra/prometheus.py), in both modes: this process's
default registry, or the sum of every process's files in PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from common.infra.prometheus import scrape_registry
from tests.support.stack import REPO

LOCAL = Counter("prometheus_registry_test_local_total", "Counted in this process only")
# A child process counts once in the shared directory, then exits.
CHILD = """
from prometheus_client import Counter
Counter("prometheus_registry_test_shared_total", "Counted by children").inc()
"""


class Answer:
    def collect(self):
        yield GaugeMetricFamily("prometheus_registry_test_answer", "Computed at scrape", value=42)


def _samples(registry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples}


def test_single_process_serves_the_default_registry_plus_collectors(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    LOCAL.inc()
    samples = _samples(scrape_registry([Answer()]))
    assert samples["prometheus_registry_test_local_total"] >= 1
    assert samples["prometheus_registry_test_answer"] == 42


def test_multiprocess_mode_sums_every_process_files_and_not_this_process(monkeypatch, tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = _samples(scrape_registry([Answer()]))
    assert samples["prometheus_registry_test_shared_total"] == 2
    assert samples["prometheus_registry_test_answer"] == 42
    # This process was not started in multiprocess mode: its own registry is not what is read.
    assert "prometheus_registry_test_local_total" not in samples
