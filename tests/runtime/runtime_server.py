"""A real ``caikit.runtime`` subprocess and small gRPC / HTTP clients for it (see conftest.py
for the fixtures). Importable by tests: ``from runtime_server import start_runtime``."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
import yaml
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
LOOPBACK = "127.0.0.1"
TINY_LIBRARY = "tiny_runtime_lib"

if str(HERE) not in sys.path:  # tiny_runtime_lib must import here too (models are saved here)
    sys.path.insert(0, str(HERE))


def free_ports(count: int) -> list[int]:
    """Distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def deep_merge(base: Mapping, overlay: Mapping) -> dict:
    """``base`` with ``overlay`` merged in recursively (mappings merge, other values replace)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def runtime_command() -> list[str]:
    """The exact command an operator runs: ``python -m caikit.runtime``."""
    return [sys.executable, "-m", "caikit.runtime"]


class RuntimeServer:
    """A running ``caikit.runtime`` subprocess and small clients for it."""

    def __init__(self, *, command, config, workdir, grpc_port, http_port, env):
        self.command = list(command)
        self.config = config
        self.workdir = Path(workdir)
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.config_file = self.workdir / "runtime-config.yml"
        self.log_file = self.workdir / "runtime.log"
        self.models_dir = Path(config["runtime"]["local_models_dir"])
        self.startup_seconds: float | None = None
        self.returncode: int | None = None
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = open(self.log_file, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command,
            cwd=self.workdir,
            env={**env, "CONFIG_FILES": str(self.config_file)},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: teardown reaches its children too
        )
        self._started = time.monotonic()
        self._channel: grpc.Channel | None = None
        self._pool: descriptor_pool.DescriptorPool | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def grpc_target(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc_target)
        return self._channel

    def logs(self) -> str:
        self._log.flush()
        return self.log_file.read_text(errors="replace")

    # -- readiness ---------------------------------------------------------------------------
    def _fail(self, why: str):
        tail = "\n".join(self.logs().splitlines()[-60:])
        pytest.fail(f"caikit.runtime {why} ({' '.join(self.command)})\n--- log tail ---\n{tail}")

    def wait_ready(self, timeout: float) -> None:
        """Poll until gRPC health is SERVING and HTTP /health is 200 (for the servers the config
        enables), or fail at the deadline."""
        deadline = time.monotonic() + timeout
        grpc_ok = not self.config["runtime"]["grpc"]["enabled"]
        http_ok = not self.config["runtime"]["http"]["enabled"]
        while not (grpc_ok and http_ok):
            if self.process.poll() is not None:
                self._fail(f"exited with {self.process.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._fail(f"not ready after {timeout}s (grpc={grpc_ok}, http={http_ok})")
            grpc_ok = grpc_ok or self._grpc_serving(timeout=0.5)
            http_ok = http_ok or self._http_healthy(timeout=0.5)
            if not (grpc_ok and http_ok):
                time.sleep(0.1)  # poll interval, bounded by the deadline above
        self.startup_seconds = time.monotonic() - self._started

    def _grpc_serving(self, timeout: float) -> bool:
        try:
            return self.grpc_health(timeout=timeout) == "SERVING"
        except grpc.RpcError:
            return False

    def _http_healthy(self, timeout: float) -> bool:
        try:
            return self.http_health(timeout=timeout) == 200
        except requests.RequestException:
            return False

    # -- clients -----------------------------------------------------------------------------
    def grpc_health(self, service: str = "", timeout: float = 10) -> str:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def http_health(self, timeout: float = 10) -> int:
        """Status code of ``GET /health``."""
        return requests.get(f"{self.http_url}/health", timeout=timeout).status_code

    def grpc_services(self) -> list[str]:
        """Service names the server lists through gRPC reflection."""
        return sorted(ProtoReflectionDescriptorDatabase(self.channel).get_services())

    def _method(self, method: str) -> tuple[Any, type, type]:
        """(descriptor, request class, reply class) of ``"package.Service/Method"``."""
        if self._pool is None:
            self._pool = descriptor_pool.DescriptorPool(
                ProtoReflectionDescriptorDatabase(self.channel)
            )
        service_name, method_name = method.rsplit("/", 1)
        descriptor = self._pool.FindServiceByName(service_name).FindMethodByName(method_name)
        return (
            descriptor,
            message_factory.GetMessageClass(descriptor.input_type),
            message_factory.GetMessageClass(descriptor.output_type),
        )

    @staticmethod
    def _metadata(model_id: str | None, metadata: Mapping[str, str] | None) -> list | None:
        pairs = [("mm-model-id", model_id)] if model_id else []
        pairs += [(key, value) for key, value in (metadata or {}).items()]
        return pairs or None

    @staticmethod
    def _to_dict(reply: Any) -> dict:
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    def grpc_call(
        self,
        method: str,
        request: Mapping[str, Any] | None = None,
        *,
        model_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> dict:
        """Unary call of ``"package.Service/Method"`` with a JSON-like request and reply.

        Message types come from the server's reflection service, so no stubs are needed.
        ``model_id`` is sent as caikit's ``mm-model-id`` metadata, ``metadata`` as more pairs.
        """
        _, request_cls, reply_cls = self._method(method)
        rpc = self.channel.unary_unary(
            "/" + method,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=reply_cls.FromString,
        )
        message = json_format.ParseDict(dict(request or {}), request_cls())
        reply = rpc(message, metadata=self._metadata(model_id, metadata), timeout=timeout)
        return self._to_dict(reply)

    def grpc_stream(
        self,
        method: str,
        request: Mapping[str, Any] | None = None,
        *,
        model_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> list[dict]:
        """Server-streaming call: every reply of the stream, in order."""
        _, request_cls, reply_cls = self._method(method)
        rpc = self.channel.unary_stream(
            "/" + method,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=reply_cls.FromString,
        )
        message = json_format.ParseDict(dict(request or {}), request_cls())
        replies = rpc(message, metadata=self._metadata(model_id, metadata), timeout=timeout)
        return [self._to_dict(reply) for reply in replies]

    def grpc_bidi(
        self,
        method: str,
        requests_: list[Mapping[str, Any]],
        *,
        model_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> list[dict]:
        """Bidirectional-streaming call: sends ``requests_``, returns every reply."""
        _, request_cls, reply_cls = self._method(method)
        rpc = self.channel.stream_stream(
            "/" + method,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=reply_cls.FromString,
        )
        messages = [json_format.ParseDict(dict(r), request_cls()) for r in requests_]
        replies = rpc(iter(messages), metadata=self._metadata(model_id, metadata), timeout=timeout)
        return [self._to_dict(reply) for reply in replies]

    def http_predict(
        self,
        task: str,
        model_id: str,
        inputs: Any,
        parameters: Mapping[str, Any] | None = None,
        timeout: float = 60,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """POST ``/api/v1/task/<task>`` (``task`` in kebab case, e.g. ``greeting``)."""
        body: dict[str, Any] = {"model_id": model_id, "inputs": inputs}
        if parameters:
            body["parameters"] = dict(parameters)
        return requests.post(
            f"{self.http_url}/api/v1/task/{task}",
            json=body,
            timeout=timeout,
            headers=dict(headers or {}),
        )

    def http_stream(
        self,
        task: str,
        model_id: str,
        inputs: Any,
        parameters: Mapping[str, Any] | None = None,
        timeout: float = 60,
    ) -> list[tuple[str, Any]]:
        """POST a server-streaming task (``server-streaming-<task>``); the server-sent events
        as ``(event, parsed JSON data)`` pairs, in order (``event`` is ``message`` or
        ``error``)."""
        response = self.http_predict(
            f"server-streaming-{task}", model_id, inputs, parameters, timeout=timeout
        )
        response.raise_for_status()
        events, event, data = [], "message", []
        for line in response.iter_lines(decode_unicode=True):
            if not line:  # blank line: end of one event
                if data:
                    events.append((event, json.loads("\n".join(data))))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
        if data:
            events.append((event, json.loads("\n".join(data))))
        return events

    # -- shutdown ----------------------------------------------------------------------------
    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the runtime, SIGKILL it after ``timeout``; then kill what is left of its
        process group (e.g. Dask workers it spawned). Returns the exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._killpg()
                self.process.wait(timeout=10)
        self._killpg()
        self.returncode = self.process.returncode
        self._log.close()
        return self.returncode

    def _killpg(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the group this process leads


def _save_models(models: Mapping[str, Any], models_dir: Path) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    for model_id, model in models.items():
        target = models_dir / model_id
        if isinstance(model, (str, os.PathLike)):
            shutil.copytree(model, target)
        else:
            model.save(str(target))


def start_runtime(
    workdir: Path,
    *,
    config: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    library: str = TINY_LIBRARY,
    command: list[str] | None = None,
    startup_timeout: float = 120,
) -> RuntimeServer:
    """Start ``caikit.runtime`` in ``workdir`` and return it once both servers are ready."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_ports(2)
    base = {
        "runtime": {
            "library": library,
            "local_models_dir": str(workdir / "models"),
            "grpc": {
                "enabled": True,
                "port": grpc_port,
                "unix_socket_path": "",
                "server_shutdown_grace_period_seconds": 2,
            },
            "http": {
                "enabled": True,
                "port": http_port,
                "server_shutdown_grace_period_seconds": 2,
            },
            "metrics": {"enabled": False},
            "training": {"output_dir": str(workdir / "training_output")},
        },
        "log": {"formatter": "pretty", "level": "info"},
    }
    merged = deep_merge(base, config or {})
    _save_models(models or {}, Path(merged["runtime"]["local_models_dir"]))
    python_path = [str(REPO_ROOT), str(HERE)]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path), "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    server = RuntimeServer(
        command=command or runtime_command(),
        config=merged,
        workdir=workdir,
        grpc_port=merged["runtime"]["grpc"]["port"],
        http_port=merged["runtime"]["http"]["port"],
        env=full_env,
    )
    try:
        server.wait_ready(startup_timeout)
    except BaseException:
        server.stop()
        raise
    return server
