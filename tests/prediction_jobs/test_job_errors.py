"""A failing call keeps its exception; bad config and bad calls fail where they are made."""

import threading

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from slow_model import SlowModel, SlowModelError

from caikit_dask import DaskJobPredictor
from caikit_dask.errors import DaskConfigError
from caikit_dask.example import EchoWithContext


def test_the_modules_exception_reaches_the_caller_unchanged(predictor):
    future = predictor.predict(SlowModel(), "run", "x", fail="the model broke")
    assert future.wait(30)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    assert [type(e) for e in info.errors] == [SlowModelError]
    assert str(info.errors[0]) == "the model broke"
    assert info.completion_time is not None
    with pytest.raises(SlowModelError, match="the model broke"):
        future.result()


def test_an_unknown_method_fails_at_predict(predictor):
    with pytest.raises(ValueError, match="no method 'predict_all'"):
        predictor.predict(EchoWithContext(), "predict_all", "x")


def test_an_unknown_id_is_not_found(predictor):
    with pytest.raises(CaikitCoreException) as caught:
        predictor.get_prediction_future("no-such-job")
    assert caught.value.status_code is CaikitCoreStatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "config, message",
    [
        ({"result_dir": "/tmp"}, r"job_predictors\.jobs\.config\.result_dir: unknown key"),
        ({"retention_duration": "soon"}, r"retention_duration: 'soon' is not a duration"),
        ({"connection": {"adress": "tcp://x:1"}}, r"connection\.adress: unknown key"),
    ],
)
def test_bad_config_fails_at_construction_naming_the_key(config, message):
    with pytest.raises(DaskConfigError, match=message):
        DaskJobPredictor(config, "jobs")


def test_an_argument_that_cannot_be_sent_is_named_at_predict(predictor):
    with pytest.raises(TypeError, match=r"argument 'metadata_key' of run \(lock\) cannot be sent"):
        predictor.predict(EchoWithContext(), "run", "x", metadata_key=threading.Lock())
