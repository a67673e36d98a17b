"""Running the ``caikit-dask`` command as an operator does: a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from cluster_support import worker_env


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``caikit-dask ARGS`` (as ``python -m caikit_dask.cli``, the console script's ``main``)."""
    return subprocess.run(
        [sys.executable, "-m", "caikit_dask.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**worker_env(), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def cli_json(*args: str, **kwargs: Any) -> Any:
    done = cli(*args, "--json", **kwargs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
