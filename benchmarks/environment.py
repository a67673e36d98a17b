"""The processes of a run: where progress is logged, what workers and probes inherit.

Workers are spawned processes that import ``benchmarks.modules`` by name, so
the repo root goes on their ``PYTHONPATH``; every process uses one BLAS thread
so the CPU-bound model is not fighting the workers for two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare_worker_environment() -> None:
    """Workers (spawned processes) must import ``benchmarks`` and use one BLAS thread."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def run_module_json(args: list[str], timeout: float) -> dict:
    """Run ``python -m <args>`` and parse the JSON object on its last stdout line."""
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout)[-2000:]
        raise RuntimeError(f"{' '.join(args)} exited {completed.returncode}: {tail}")
    return json.loads(lines[-1])
