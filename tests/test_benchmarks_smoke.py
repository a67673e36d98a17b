"""The benchmark command still runs end to end (``python -m benchmarks --smoke``).

Benchmarks rot silently when nobody runs them; this runs the tiny mode once as
a user would, in a subprocess with its own LocalCluster, and checks that every
benchmark reported numbers in both the table and the JSON. Judging and
rendering are pure functions of the results, checked here without a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SECTIONS = (
    "latency",
    "throughput",
    "scaling",
    "training",
    "memory",
    "scale",
    "batch",
    "many_models",
    "memory_pressure",
    "step_load",
    "gang",
    "runtime",
)
TABLE_TITLES = (
    "== 1. sequential latency",
    "== 2. concurrent throughput",
    "== 3. scaling",
    "== 4. training",
    "== 5. client RSS growth",
    "== 6. many trainings",
    "== 7. batch scoring",
    "== 8. many models",
    "== 9. memory pressure",
    "== 10. step load",
    "== 11. one DDP training as 1, 2, 3 ranks",
    "== 12. caikit.runtime serving a trivial model",
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
    listing = results["scale"]["list"]
    assert listing["ours_listed"] == results["scale"]["trainings"]
    assert listing["statuses"] == {"COMPLETED": results["scale"]["trainings"]}
    assert results["batch"]["variants"]["proxy_map"]["calls_per_s"] > 0
    many = results["many_models"]
    assert many["answered"] == many["models"] == 20
    assert many["round_robin_calls_per_s"] > 0 and many["max_threads_many"] < 100
    pressure = results["memory_pressure"]
    assert pressure["pressure"] >= 3 and pressure["failed_calls"] == 0
    assert pressure["skewed_calls_per_s"] > 0 and pressure["uniform_calls_per_s"] > 0
    assert pressure["reload_p99_ms"] >= pressure["reload_p50_ms"] > 0
    step = results["step_load"]
    assert [phase["threads"] for phase in step["phases"]] == [1, 16, 1]
    assert step["failed"] == 0 and step["phases"][1]["calls_per_s"] > 0
    gang = results["gang"]
    if "skipped" not in gang:  # torch is installed (CI's caikit-nlp venv)
        assert sorted(gang["ranks"]) == ["1", "2", "3"]
        assert all(ranks["step_s"] > 0 and ranks["start_s"] > 0 for ranks in gang["ranks"].values())
    assert len(results["targets"]) == 22
    assert "skipped" in results["ray"]
    assert results["latency"]["variants"]["floor"]["p50_us"] > 0
    assert results["throughput"]["variants"]["proxy_off_threads"]["calls_per_s"] > 0
    runtime = results["runtime"]
    assert runtime["latency"]["dask_grpc"]["p50_us"] > 0
    assert runtime["throughput"]["local_http_threads"]["calls_per_s"] > 0


@pytest.fixture
def bench_package(monkeypatch):
    """The ``benchmarks`` package is not installed: import it from the repository root."""
    monkeypatch.syspath_prepend(str(REPO))


@pytest.mark.usefixtures("bench_package")
def test_benchmarks_measure_every_section_once_in_run_order():
    from benchmarks.results import SECTIONS
    from benchmarks.run import BENCHMARKS

    assert tuple(name for benchmark in BENCHMARKS for name in benchmark.sections) == SECTIONS


@pytest.mark.usefixtures("bench_package")
def test_targets_are_met_not_met_or_na_from_the_numbers_alone():
    from benchmarks.targets import judge_targets, unmet

    results = {
        "latency": {
            "variants": {"proxy": {"p50_us": 900.0}, "raw_dask_direct": {"p50_us": 1000.0}}
        },
        "scaling": {"ratio": 1.2},
        "training": {"error": "RuntimeError: lost"},
        "ray": {"skipped": "not run (--no-ray)"},
    }
    judged = {t["target"]: (t["met"], t["detail"]) for t in judge_targets(results)}
    assert judged["proxy p50 <= 1.05x raw Dask actor p50"] == (True, "0.90x (900 vs 1000 us)")
    assert judged["2 replicas >= 1.8x one (CPU-bound)"] == (False, "1.200x")
    assert judged["proxy p50 <= Ray actor p50"] == (None, "no Ray")
    assert judged["train() returns < 20 ms (p50)"] == (None, "missing")
    assert unmet(judge_targets(results))


@pytest.mark.usefixtures("bench_package")
def test_report_names_a_failed_section_and_renders_only_what_ran():
    from benchmarks.report import render
    from benchmarks.targets import judge_targets

    results = {
        "meta": {
            "plan": "smoke",
            "commit": "abc1234",
            "dirty": False,
            "date": "2026-01-01T00:00:00",
            "python": "3.11",
            "caikit": "0",
            "dask": "0",
            "distributed": "0",
            "cpus": 2,
            "platform": "test",
            "loadavg_start": [0.0, 0.0, 0.0],
        },
        "ray": {"skipped": "not run (--no-ray)"},
        "scaling": {"error": "RuntimeError: no workers"},
    }
    results["targets"] = judge_targets(results)
    text = render(results)
    assert "== scaling == FAILED: RuntimeError: no workers" in text
    assert "Ray baseline skipped: not run (--no-ray)" in text
    assert "== 1. sequential latency" not in text and "== 3. scaling" not in text
    assert text.count(" n/a ") == 22
