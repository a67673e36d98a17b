"""A real ``caikit.runtime`` with DASK as its initializer answers as it would with LOCAL.

One runtime, with ``dask scheduler`` / ``dask worker`` processes, serving two models of
``parity_testlib``:

- a model's exception maps to the gRPC status and HTTP code caikit gives it with LOCAL
  (caikit's own mapping: a ``CaikitCoreException``'s status, a ``grpc.RpcError``'s code,
  INTERNAL for anything else), unary and mid-stream, and a stream's arrives at once;
- the initializer's ``backend_priority`` backends are told each request's context
  (``handle_runtime_context``), as caikit.runtime tells LOCAL's;
- caikit's metering counts requests under the served class's name
  (``str(type(model))``), not the proxy's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import grpc
import pytest
from caikit.runtime.names import STATUS_CODE_TO_HTTP
from cluster_support import TESTS_DIR, ProcessCluster, poll, process_cluster, worker_env
from parity_testlib import ContextReader, Raiser

pytestmark = pytest.mark.slow

SERVICE = "caikit.runtime.ParityTestlib.ParityTestlibService"
PREDICT = f"{SERVICE}/ExampleTextClassificationTaskPredict"
STREAM = f"{SERVICE}/ServerStreamingExampleTextClassificationTaskPredict"
ECHO = f"{SERVICE}/EchoTaskPredict"
CALL_TIMEOUT = 60
# caikit's table as it ships, copied at collection: a DASK initializer built with
# max_queued_calls in this process (another test) makes RESOURCE_EXHAUSTED answer 503 in it.
CAIKIT_HTTP_STATUS = dict(STATUS_CODE_TO_HTTP)

# What caikit.runtime answers for each exception of parity_testlib.Raiser, with LOCAL:
# a CaikitCoreException's status, a grpc.RpcError's code, INTERNAL for any other.
EXPECTED = {
    "core": grpc.StatusCode.INVALID_ARGUMENT,
    "grpc": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "two-part": grpc.StatusCode.INTERNAL,
    "locked": grpc.StatusCode.INTERNAL,
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterable[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("dask"), {"cpu": {}}, [str(TESTS_DIR)]) as c:
        yield c


@pytest.fixture(scope="module")
def runtime(cluster, caikit_runtime_module_factory, tmp_path_factory):
    record = tmp_path_factory.mktemp("contexts") / "contexts.jsonl"
    metering = tmp_path_factory.mktemp("metering")
    initializer = {
        "type": "DASK",
        "config": {
            "connection": {"address": cluster.address, "timeout": "20s"},
            "call_timeout": f"{CALL_TIMEOUT}s",
            "backend_priority": [
                {"type": "PARITY_RECORDING", "config": {"record_to": str(record)}},
                {"type": "LOCAL"},
            ],
        },
    }
    server = caikit_runtime_module_factory(
        config={
            "runtime": {"metering": {"enabled": True, "log_dir": str(metering), "log_interval": 1}},
            "model_management": {"initializers": {"default": initializer}},
        },
        library="parity_testlib",
        models={"raiser": Raiser(), "reader": ContextReader()},
        env={"PYTHONPATH": worker_env()["PYTHONPATH"]},  # parity_testlib, caikit_dask
    )
    server.record, server.metering = record, metering
    return server


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_models_exception_answers_as_with_local(runtime, kind):
    code = EXPECTED[kind]
    with pytest.raises(grpc.RpcError) as unary:
        runtime.grpc_call(PREDICT, {"text": kind}, model_id="raiser")
    assert unary.value.code() is code, unary.value.details()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as streamed:
        runtime.grpc_stream(STREAM, {"text": kind}, model_id="raiser")
    assert streamed.value.code() is code, streamed.value.details()
    assert time.monotonic() - started < CALL_TIMEOUT / 4  # at once, not after call_timeout
    response = runtime.http_predict("example-text-classification", "raiser", kind)
    assert response.status_code == CAIKIT_HTTP_STATUS.get(code, 500), response.text  # caikit's


def test_a_caikit_errors_message_reaches_the_client(runtime):
    with pytest.raises(grpc.RpcError) as raised:
        runtime.grpc_call(PREDICT, {"text": "core"}, model_id="raiser")
    assert "the text is unusable" in raised.value.details()
    response = runtime.http_predict("example-text-classification", "raiser", "grpc")
    assert "quota of the upstream service used up" in response.text


def test_backends_are_told_each_requests_context(runtime):
    reply = runtime.grpc_call(ECHO, {"text": "hi"}, model_id="reader", metadata={"x-k": "v"})
    assert reply["context_type"] == "ForwardedContext"
    assert json.loads(reply["metadata_value"])["x-k"] == "v"
    assert runtime.http_predict("echo", "reader", "hi").status_code == 200

    def told() -> list[dict]:
        if not runtime.record.exists():
            return []
        lines = [json.loads(line) for line in runtime.record.read_text().splitlines()]
        return [line for line in lines if line["model_id"] == "reader"]

    seen = poll(lambda: len(told()) >= 2 and told(), 30, what="the backend to be told")
    kinds = {line["context"] for line in seen}
    assert "Request" in kinds  # the HTTP request
    assert kinds - {"Request"}  # and the gRPC call's context


def test_metering_counts_requests_under_the_served_class(runtime):
    for _ in range(3):
        runtime.grpc_call(PREDICT, {"text": "fine"}, model_id="raiser")

    def counted() -> dict:
        counts: dict = {}
        for path in runtime.metering.glob("*.json"):
            for line in path.read_text().splitlines():
                for name, count in json.loads(line)["model_type_counters"].items():
                    counts[name] = counts.get(name, 0) + count
        return counts

    counts = poll(
        lambda: counted().get(str(Raiser), 0) >= 3 and counted(), 30, what="metering to write"
    )
    assert str(Raiser) == "<class 'parity_testlib.Raiser'>"
    assert not [name for name in counts if "caikit_dask" in name], counts
