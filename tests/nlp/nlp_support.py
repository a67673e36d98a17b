"""Helpers for the caikit-nlp tests: the runtime config a caikit-nlp user writes, a probe of
the model actors on the workers, and comparing results that crossed processes (a proxy, gRPC,
HTTP) with a local load's."""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import json_format

NLP_SERVICE = "caikit.runtime.Nlp.NlpService"


def dask_runtime_config(scheduler_address: str) -> dict:
    """What a caikit-nlp user writes: their library, and DASK as trainer and initializer."""
    connection = {"address": scheduler_address, "timeout": "20s"}
    return {
        "runtime": {"library": "caikit_nlp"},
        "model_management": {
            "trainers": {
                "default": {
                    "type": "DASK",
                    "import_class": "caikit_dask.DaskModelTrainer",
                    "config": {"connection": connection},
                }
            },
            "initializers": {
                "default": {
                    "type": "DASK",
                    "import_class": "caikit_dask.DaskModelInitializer",
                    "config": {"connection": connection, "call_timeout": "120s"},
                }
            },
        },
    }


def models_on_workers(client, model_class: type) -> list[dict]:
    """Every model actor on the workers holding a ``model_class`` (name, calls, pid)."""

    def probe(dask_worker, class_name=model_class.__name__):
        import os

        from caikit_dask.loading.actor.model_actor import ModelActor

        return [
            {"model": type(actor.model).__name__, "calls": actor.calls, "pid": os.getpid()}
            for actor in list(dask_worker.state.actors.values())
            if isinstance(actor, ModelActor) and type(actor.model).__name__ == class_name
        ]

    return [actor for actors in client.run(probe).values() for actor in actors]


def assert_close(actual: Any, expected: Any, path: str = "result") -> None:
    """Equal structure and values; floats equal to float32 precision (protobuf floats)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not a mapping"
        assert sorted(actual) == sorted(expected), f"{path}: keys {sorted(actual)}"
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{path}: {len(actual)} != {len(expected)} items"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{index}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-5, abs_tol=1e-6), f"{path}: {actual}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_served_as_local(
    runtime: Any,
    expected: Any,
    model_id: str,
    grpc_method: str,
    http_task: str,
    inputs: Any,
    parameters: dict | None = None,
) -> None:
    """``model_id`` answers ``inputs`` (and ``parameters``) over gRPC and HTTP with what a
    local run gave (``expected``)."""
    request = dict(inputs) if isinstance(inputs, dict) else {"text": inputs}
    request.update(parameters or {})
    reply = runtime.grpc_call(f"{NLP_SERVICE}/{grpc_method}", request, model_id=model_id)
    assert_close(reply, as_grpc_json(expected))
    response = runtime.http_predict(http_task, model_id, inputs, parameters)
    assert response.status_code == 200, response.text
    assert_close(response.json(), as_http_json(expected))


def as_grpc_json(result: Any) -> dict:
    """A data-model result as the gRPC helpers return replies (proto3 JSON, field names)."""
    return json_format.MessageToDict(result.to_proto(), preserving_proto_field_name=True)


def as_http_json(result: Any) -> Any:
    """A data-model result as caikit's HTTP server writes it."""
    return json.loads(result.to_json())


def as_plain(result: Any) -> Any:
    """A data-model result as plain JSON values, arrays and tensors included (caikit-nlp's
    TokenizationResults holds torch tensors, which ``to_json`` cannot write)."""

    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        raise TypeError(f"unexpected {type(value)} in a result")

    return json.loads(json.dumps(result.to_dict(), default=plain))
