"""Benchmark 5: client RSS growth loading a big model, LOCAL versus DASK.

The ~200 MB ``TextClassifier`` is built in another process before the cluster
starts, so its arrays never touch this process; each load is measured in a
fresh process (``benchmarks/memory_probe.py``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dask.utils import format_bytes, format_time

from .environment import REPO, log, run_module_json
from .session import Benchmark


class MemoryBenchmark(Benchmark):
    sections = ("memory",)

    def prepare(self) -> None:
        self.big_path = str(self.session.workdir / "big")
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from caikit_dask.example import TextClassifier; "
                "TextClassifier.train(epochs=5, n_features=int(sys.argv[1]), weight_noise=1e-3)"
                ".save(sys.argv[2])",
                str(self.plan.memory_features),
                self.big_path,
            ],
            cwd=REPO,
            check=True,
            timeout=300,
            capture_output=True,
        )
        size = sum(f.stat().st_size for f in Path(self.big_path).rglob("*") if f.is_file())
        self.big_size_mb = size / 2**20
        log(f"big model: {format_bytes(size)} in {format_time(time.perf_counter() - started)}")

    def memory(self) -> dict:
        result: dict[str, Any] = {"model_mb": self.big_size_mb}
        for mode in ("local", "dask"):
            args = ["benchmarks.memory_probe", f"--mode={mode}", f"--model={self.big_path}"]
            if mode == "dask":
                args.append(f"--address={self.session.address}")
            result[mode] = run_module_json(args, timeout=300)
        return result
