"""``caikit.runtime`` really starts here: gRPC and HTTP answer, a model predicts, it stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caikit_dask import runtime_support

HERE = Path(__file__).resolve().parent  # holds tiny_runtime_lib
REPO_ROOT = HERE.parents[1]
LOOPBACK = "127.0.0.1"
SERVICE = "caikit.runtime.TinyRuntimeLib.TinyRuntimeLibService"

pytestmark = pytest.mark.slow


def _port_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex((LOOPBACK, port)) != 0


def test_runtime_serves_grpc_and_http_then_stops(caikit_runtime):
    server = caikit_runtime
    print(f"caikit.runtime ready in {server.startup_seconds:.2f}s via {server.command[1:]}")

    # Both servers are up.
    assert server.grpc_health() == "SERVING"
    assert server.http_health() == 200
    assert SERVICE in server.grpc_services()
    info = server.grpc_call("caikit.runtime.info.InfoService/GetModelsInfo")
    assert [m["name"] for m in info["models"]] == ["greeter"]

    # The model in local_models_dir predicts over gRPC ...
    reply = server.grpc_call(f"{SERVICE}/GreetingTaskPredict", {"name": "Ann"}, model_id="greeter")
    assert reply == {"text": "Hi, Ann!", "length": "8"}  # proto3 JSON writes int64 as a string

    # ... and over HTTP.
    response = server.http_predict("greeting", "greeter", "Bob")
    assert response.status_code == 200, response.text
    assert response.json() == {"text": "Hi, Bob!", "length": 8}

    # An unknown model is a 404, not a hang.
    missing = server.http_predict("greeting", "no-such-model", "Bob")
    assert missing.status_code == 404, missing.text

    # Stopping ends the process and frees both ports.
    server.stop()
    assert server.process.poll() is not None
    assert _port_closed(server.grpc_port)
    assert _port_closed(server.http_port)


def test_plain_python_m_caikit_runtime_starts(caikit_runtime_factory):
    """The exact ``python -m caikit.runtime`` command, with no caikit_dask launcher."""
    if not runtime_support.caikit_ships_runtime_protos():
        pytest.skip(
            "this caikit wheel (0.29.1) ships no compiled runtime protos: `python -m "
            "caikit.runtime` needs caikit!=0.29.1 or `python -m caikit_dask.runtime_support`"
        )
    server = caikit_runtime_factory(command=[sys.executable, "-m", "caikit.runtime"])
    assert server.grpc_health() == "SERVING"
    assert server.http_health() == 200


def test_launcher_starts_runtime(caikit_runtime_factory):
    """``python -m caikit_dask.runtime_support`` is a drop-in for ``python -m caikit.runtime``."""
    server = caikit_runtime_factory(command=[sys.executable, "-m", "caikit_dask.runtime_support"])
    assert server.grpc_health() == "SERVING"
    assert server.http_health() == 200


def test_runtime_protos_compiled_and_served_under_caikit_names(tmp_path):
    """The shim compiles caikit's shipped .proto files and serves them as caikit's modules
    (forced, so this also runs where caikit ships its own compiled modules)."""
    script = textwrap.dedent(
        """
        import sys
        from caikit_dask import runtime_support

        assert runtime_support.ensure_runtime_protos(force=True)
        assert runtime_support.ensure_runtime_protos(force=True)  # idempotent
        from caikit.runtime.protobufs import model_runtime_pb2, process_pb2_grpc
        import caikit.runtime.grpc_server  # the import that fails on a bare caikit 0.29.1

        assert model_runtime_pb2.__file__.startswith(sys.argv[1]), model_runtime_pb2.__file__
        assert process_pb2_grpc.process__pb2.__name__ == "caikit.runtime.protobufs.process_pb2"
        request = model_runtime_pb2.LoadModelRequest(modelId="m", modelPath="/p")
        assert model_runtime_pb2.LoadModelRequest.FromString(request.SerializeToString()) == request
        print("ok")
        """
    )
    cache = tmp_path / "proto-cache"
    python_path = os.pathsep.join([str(REPO_ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path, "CAIKIT_DASK_PROTO_CACHE": str(cache)}
    for attempt in ("compiles", "reuses the cache"):
        result = subprocess.run(
            [sys.executable, "-c", script, str(cache)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{attempt}: {result.stderr}"
        assert result.stdout.strip() == "ok"
        entries = sorted(p.name for p in cache.iterdir())
        assert len(entries) == 1 and not entries[0].startswith("."), entries


def test_ensure_runtime_protos_is_a_no_op_when_caikit_ships_them():
    if not runtime_support.caikit_ships_runtime_protos():
        pytest.skip("this caikit wheel ships no compiled runtime protos")
    assert runtime_support.ensure_runtime_protos() is False
