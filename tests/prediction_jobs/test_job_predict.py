"""predict() returns at once; the job's status, times and result follow it on Dask."""

import time

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.model_management.job_predictor_base import JobPredictorBase
from cluster_support import poll
from slow_model import SlowModel

from caikit_dask import DaskBackend
from caikit_dask.example import EchoWithContext


def test_predict_returns_at_once_and_the_status_follows_the_job(predictor):
    started = time.monotonic()
    future = predictor.predict(SlowModel(prefix="slow:"), "run", "hi", seconds=1.5)
    assert time.monotonic() - started < 1.0  # nowhere near the 1.5 s the call takes

    assert future.get_info().status in (JobStatus.QUEUED, JobStatus.RUNNING)
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 20, what="the job to run")
    assert future.get_info().completion_time is None

    assert future.wait(30)
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED
    assert info.errors is None
    assert info.submission_time <= info.completion_time
    assert (info.completion_time - info.submission_time).total_seconds() >= 1.5
    assert future.result().text == "slow:hi"


def test_a_local_model_is_shipped_by_value_to_the_worker(predictor):
    model = EchoWithContext(prefix="local:")
    futures = [predictor.predict(model, "run", f"n{i}") for i in range(3)]
    assert [f.result(timeout=30).text for f in futures] == ["local:n0", "local:n1", "local:n2"]


def test_a_dask_loaded_model_runs_against_its_actors(connection, predictor, tmp_path):
    EchoWithContext(prefix="actor:").save(str(tmp_path / "echo"))
    backend = DaskBackend({"connection": connection})
    proxy = backend.load(str(tmp_path / "echo"))
    try:
        future = predictor.predict(proxy, "run", "hello")
        # A proxy holds no weights (its save() refuses): only its actors can answer.
        assert future.result(timeout=30).text == "actor:hello"
        assert proxy.published_as is not None
        assert predictor.predict(proxy, "run", "again").result(timeout=30).text == "actor:again"
    finally:
        proxy.close()
        backend.stop()


def test_ids_are_composed_like_caikits_so_the_runtime_routes_them_back(make_predictor):
    predictor = make_predictor("background")
    future = predictor.predict(EchoWithContext(), "run", "x")
    assert JobPredictorBase.get_predictor_name(future.id) == "background"
    assert predictor.get_prediction_future(future.id) is future
    future.wait(30)


def test_an_external_id_is_used_as_is_and_not_restarted_while_running(predictor):
    future = predictor.predict(SlowModel(), "run", "x", seconds=30, external_prediction_id="ext-1")
    assert future.id == "ext-1"
    with pytest.raises(ValueError, match="currently running"):
        predictor.predict(SlowModel(), "run", "x", external_prediction_id="ext-1")
    future.cancel()
    again = predictor.predict(EchoWithContext(), "run", "y", external_inference_id="ext-1")
    assert again.result(timeout=30).text == "y"
    assert predictor.get_prediction_future("ext-1") is again
