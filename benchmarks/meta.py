"""What a run ran on: commit, versions, machine and its load, for the header and the JSON."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from .environment import REPO
from .plan import Plan


def describe_run(plan: Plan) -> dict:
    """The ``meta`` entry of the results, as known when the run starts."""
    import caikit
    import dask
    import distributed
    import psutil

    try:
        caikit_version = importlib.metadata.version("caikit")
    except Exception:  # noqa: BLE001 - only informative
        caikit_version = _version(caikit)
    return {
        "plan": plan.name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_start": load_average(),
        "caikit": caikit_version,
        "dask": _version(dask),
        "distributed": _version(distributed),
    }


def load_average() -> list[float]:
    """The 1/5/15-minute load average, rounded for the header."""
    return [round(x, 2) for x in os.getloadavg()]


def _version(module: Any) -> str:
    return getattr(module, "__version__", "?")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
