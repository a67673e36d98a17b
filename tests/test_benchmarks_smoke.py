"""The benchmark command still runs end to end (``python -m benchmarks --smoke``).

Benchmarks rot silently when nobody runs them; this runs the tiny mode once as
a user would, in a subprocess with its own LocalCluster, and checks that every
benchmark reported numbers in both the table and the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SECTIONS = ("latency", "throughput", "scaling", "training", "memory", "scale")
TABLE_TITLES = (
    "== 1. sequential latency",
    "== 2. concurrent throughput",
    "== 3. scaling",
    "== 4. training",
    "== 5. client RSS growth",
    "== 6. many trainings",
    "== targets ==",
)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_benchmarks_smoke_run(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the command must set up the workers' path itself
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--no-ray", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    for title in TABLE_TITLES:
        assert title in completed.stdout, f"{title!r} missing from:\n{completed.stdout}"
    assert "FAILED" not in completed.stdout

    results = json.loads(out.read_text())
    for section in SECTIONS:
        assert section in results and "error" not in results[section], results.get(section)
    assert results["latency"]["variants"]["proxy"]["p50_us"] > 0
    assert results["throughput"]["variants"]["proxy_threads"]["calls_per_s"] > 0
    assert results["scaling"]["ratio"] > 0
    assert results["training"]["train_returns"]["n"] > 0
    assert results["memory"]["dask"]["model_type"].startswith("Dask")
    assert results["scale"]["final_statuses"] == {"COMPLETED": results["scale"]["trainings"]}
    assert len(results["targets"]) == 7
    assert "skipped" in results["ray"]
