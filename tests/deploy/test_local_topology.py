"""deploy/run_local_topology.py: the deploy/base topology as real local processes."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import DEPLOY_DIR, REPO_ROOT, load_runtime_config

SCRIPT = DEPLOY_DIR / "run_local_topology.py"


def _script():
    spec = importlib.util.spec_from_file_location("run_local_topology", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _runtime_unavailable() -> str | None:
    """Why ``python -m caikit.runtime`` with the ConfigMap's library cannot start, or None."""
    code = (
        "import caikit.runtime.grpc_server, caikit.runtime.http_server\n"
        f"import {load_runtime_config()['runtime']['library']}\n"
        "from caikit_dask import DaskModelTrainer, DaskModelInitializer\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=180
    )
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def test_local_config_points_at_local_processes(tmp_path: Path):
    script = _script()
    ports = {"grpc": 1001, "http": 1002, "metrics": 1003}
    config = script.local_runtime_config(
        load_runtime_config(), "tcp://127.0.0.1:9", ports, tmp_path
    )
    management = config["model_management"]
    for section in ("trainers", "initializers"):
        entry = management[section]["default"]
        assert entry["type"] == "DASK"
        assert entry["config"]["connection"] == {"address": "tcp://127.0.0.1:9"}
    assert config["runtime"]["grpc"]["port"] == 1001
    assert config["runtime"]["http"]["port"] == 1002
    assert config["runtime"]["local_models_dir"].startswith(str(tmp_path))
    # Everything else is the ConfigMap's.
    original = load_runtime_config()
    assert config["runtime"]["library"] == original["runtime"]["library"]
    assert management["trainers"]["default"]["config"]["resources"] == {"GPU": 1}


@pytest.mark.slow
def test_dask_part_starts_checks_and_stops(tmp_path: Path):
    result = _run("--no-runtime", "--workdir", str(tmp_path), "--timeout", "120")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check: ok" in result.stdout
    assert "gpu-0 {'GPU': 1.0}" in result.stdout
    assert "tcp://127.0.0.1:" in result.stdout
    assert _left_running(tmp_path) == []


def _left_running(workdir: Path) -> list[str]:
    """Processes of this run still alive: the script starts them all in its workdir."""
    psutil = pytest.importorskip("psutil")
    left = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        if process.pid == psutil.Process().pid:
            continue
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["cwd"] == str(workdir) or str(workdir) in cmdline:
            left.append(cmdline)
    return left


@pytest.mark.slow
def test_full_topology_with_runtime(tmp_path: Path):
    reason = _runtime_unavailable()
    if reason:
        pytest.skip(f"caikit.runtime cannot start here: {reason}")
    result = _run("--workdir", str(tmp_path), "--timeout", "180", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runtime gRPC" in result.stdout and "runtime HTTP" in result.stdout
    # The ConfigMap's library is served: its example tasks have endpoints.
    library = load_runtime_config()["runtime"]["library"]
    assert f"runtime library  {library} (tasks: " in result.stdout
    assert "example-text-classification" in result.stdout
    assert "check: ok" in result.stdout
    assert _left_running(tmp_path) == []
