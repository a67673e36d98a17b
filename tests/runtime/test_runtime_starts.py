"""``caikit.runtime`` really starts here: gRPC and HTTP answer, a model predicts, it stops."""

from __future__ import annotations

import socket

import pytest

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


def test_caikit_ships_its_compiled_runtime_protos():
    """Every caikit the project allows ships ``caikit.runtime``'s compiled protos (only the
    0.29.1 wheel lacked them, and pyproject excludes it), so nothing is compiled here."""
    from caikit.runtime.protobufs import model_runtime_pb2, process_pb2_grpc

    assert model_runtime_pb2.LoadModelRequest(modelId="m").modelId == "m"
    assert hasattr(process_pb2_grpc, "ProcessServicer")
