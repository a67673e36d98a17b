"""End to end: background prediction jobs through a real ``caikit.runtime`` on Dask.

The runtime (a subprocess) has ``runtime.service_generation.enable_inference_jobs`` on,
its models loaded by the DASK initializer (into actors) or the LOCAL one (in the runtime,
so jobs ship the model to the workers), and its default job predictor of type DASK, all
on the session's LocalCluster. Jobs are started, watched, canceled and
their results fetched with the generated job RPCs over gRPC and HTTP.
"""

from __future__ import annotations

import time

import grpc
import pytest
import requests
from caikit.core.model_management.job_predictor_base import JobPredictorBase
from cluster_support import poll
from distributed import Event

from caikit_dask import DaskJobPredictor
from caikit_dask.example import EchoWithContext
from caikit_dask.prediction_jobs.on_scheduler import METADATA_KEY, dataset_name

pytestmark = pytest.mark.slow

SERVICE = "caikit.runtime.Dask.DaskJobService"
START = f"{SERVICE}/EchoTaskStartPredictionJob"
STATUS = f"{SERVICE}/EchoTaskGetPredictionJobStatus"
CANCEL = f"{SERVICE}/EchoTaskCancelPredictionJob"
RESULT = f"{SERVICE}/EchoTaskGetPredictionJobResult"


@pytest.fixture(scope="module", params=["DASK", "LOCAL"])
def runtime(request, caikit_runtime_module_factory, local_cluster):
    """Models loaded into actors (DASK initializer) or in the runtime process (LOCAL)."""
    connection = {"address": local_cluster.scheduler_address}
    initializer = {"type": request.param}
    if request.param == "DASK":
        initializer["config"] = {"connection": connection}
    return caikit_runtime_module_factory(
        library="caikit_dask",
        models={"echo": EchoWithContext(prefix="echo: ")},
        config={
            "runtime": {"service_generation": {"enable_inference_jobs": True}},
            "model_management": {
                "initializers": {"default": initializer},
                "job_predictors": {
                    "default": {"type": "DASK", "config": {"connection": connection}}
                },
            },
        },
    )


@pytest.fixture
def busy_cluster(observer):
    """Every worker thread taken by a task that waits on a gate, so new jobs stay QUEUED."""
    gate = Event(f"prediction-jobs-gate-{time.monotonic_ns()}", client=observer)
    slots = sum(observer.nthreads().values())
    blockers = [observer.submit(gate.wait, pure=False) for _ in range(slots)]
    keys = {blocker.key for blocker in blockers}
    poll(
        lambda: len(_processing(observer) & keys) == slots,
        30,
        what="every worker thread to be taken",
    )

    def release() -> None:
        gate.set()
        observer.gather(blockers)

    yield release
    release()


def _processing(observer) -> set:
    return {key for keys in observer.processing().values() for key in keys}


def _grpc_status(runtime, prediction_id: str) -> dict:
    return runtime.grpc_call(STATUS, {"prediction_id": prediction_id})


def test_a_job_runs_over_grpc_on_the_cluster(runtime, observer):
    started = runtime.grpc_call(
        START,
        {"text": "hi", "metadata_key": "x-tenant"},
        model_id="echo",
        metadata={"x-tenant": "acme"},
    )
    prediction_id = started["prediction_id"]
    assert JobPredictorBase.get_predictor_name(prediction_id) == "default"
    assert dataset_name(prediction_id) in observer.list_datasets()  # a job on the scheduler

    status = poll(
        lambda: (s := _grpc_status(runtime, prediction_id))["state"] == "COMPLETED" and s,
        30,
        what="the job to complete",
    )
    assert status["prediction_id"] == prediction_id
    assert status["submission_timestamp"] <= status["completion_timestamp"]
    result = runtime.grpc_call(RESULT, {"prediction_id": prediction_id})
    assert result["text"] == "echo: hi"
    # The call crossed to a worker: the module saw the forwarded request metadata.
    assert result["context_type"] == "ForwardedContext"
    assert result["metadata_value"] == "acme"


def test_another_process_finds_the_runtimes_job(runtime, local_cluster):
    prediction_id = runtime.grpc_call(START, {"text": "seen"}, model_id="echo")["prediction_id"]
    predictor = DaskJobPredictor({"connection": {"address": local_cluster.scheduler_address}}, "x")
    try:
        assert predictor.get_prediction_future(prediction_id).result(timeout=30).text == (
            "echo: seen"
        )
    finally:
        predictor.close()


def test_a_queued_job_canceled_over_grpc_never_runs(runtime, busy_cluster, observer):
    prediction_id = runtime.grpc_call(START, {"text": "no"}, model_id="echo")["prediction_id"]
    assert _grpc_status(runtime, prediction_id)["state"] == "QUEUED"
    canceled = runtime.grpc_call(CANCEL, {"prediction_id": prediction_id})
    assert canceled["state"] == "CANCELED"
    assert _grpc_status(runtime, prediction_id)["state"] == "CANCELED"

    busy_cluster()  # the workers are free again; a later job runs, the canceled one never
    later = runtime.grpc_call(START, {"text": "later"}, model_id="echo")["prediction_id"]
    poll(lambda: _grpc_status(runtime, later)["state"] == "COMPLETED", 30, what="a later job")
    assert observer.get_metadata([METADATA_KEY, prediction_id, "start_time"]) is None
    assert _grpc_status(runtime, prediction_id)["state"] == "CANCELED"


def test_a_queued_job_canceled_over_http(runtime, busy_cluster):
    job_url = f"{runtime.http_url}/api/v1/task/echo/job"
    started = requests.post(job_url, json={"model_id": "echo", "inputs": "web"}, timeout=30)
    assert started.status_code == 200, started.text
    prediction_id = started.json()["prediction_id"]
    assert _get(job_url, prediction_id)["state"] == "QUEUED"

    canceled = requests.delete(job_url, params={"prediction_id": prediction_id}, timeout=30)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "CANCELED"
    assert _get(job_url, prediction_id)["state"] == "CANCELED"


def _get(url: str, prediction_id: str) -> dict:
    response = requests.get(url, params={"prediction_id": prediction_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_completed_job_over_http(runtime):
    job_url = f"{runtime.http_url}/api/v1/task/echo/job"
    started = requests.post(job_url, json={"model_id": "echo", "inputs": "web"}, timeout=30)
    prediction_id = started.json()["prediction_id"]
    poll(lambda: _get(job_url, prediction_id)["state"] == "COMPLETED", 30, what="completion")
    result = requests.get(f"{job_url}/results", params={"prediction_id": prediction_id}, timeout=30)
    assert result.status_code == 200, result.text
    assert result.json()["text"] == "echo: web"
    assert result.json()["context_type"] == "ForwardedContext"


def test_an_unknown_job_is_not_found(runtime):
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_status(runtime, "no-such-job")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    job_url = f"{runtime.http_url}/api/v1/task/echo/job"
    assert (
        requests.get(job_url, params={"prediction_id": "no-such-job"}, timeout=30).status_code
        == 404
    )
