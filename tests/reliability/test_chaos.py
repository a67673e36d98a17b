"""The chaos benchmark, short: serving and training through kill -9, SIGSTOP, retirement,
a worker joining and a scheduler restart (see ``benchmarks/chaos.py``)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(420)
def test_a_short_chaos_run_loses_nothing(tmp_path):
    out = tmp_path / "chaos.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--minutes", "0.7", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(completed.stdout)
    assert out.exists(), completed.stdout[-3000:] + completed.stderr[-5000:]
    results = json.loads(out.read_text())
    assert results["faults"].get("scheduler restart") == 1
    assert sum(results["faults"].values()) >= 4
    assert results["calls_ok"] > 1000
    assert results["calls_failed_outside_restart"] == 0, results["failure_examples"]
    assert results["trainings_completed"] > 10
    assert results["trainings_stuck_outside_restart"] == 0
    assert results["models_unserved"] == []
    assert results["actors_left_over"] == 0 and results["bookings_left_over"] == 0
    assert completed.returncode == 0
