"""Resource annotations: config, per module, dask.annotate; and resources no worker has."""

import time

import dask
import pytest
from caikit.core.data_model import JobStatus
from cluster_support import poll

from caikit_dask import DaskModelTrainer
from caikit_dask.errors import DaskBackendError
from caikit_dask.example import TEXT_CLASSIFIER_MODULE_ID, TextClassifier
from caikit_dask.resources import submit_options


def test_only_explicit_options_are_forwarded():
    assert submit_options({}) == {}
    assert submit_options({"GPU": 1}) == {"resources": {"GPU": 1}}
    assert submit_options({"GPU": 1}, {"m": {"GPU": 2}}, "m", retries=2) == {
        "resources": {"GPU": 2},
        "retries": 2,
    }
    with dask.annotate(resources={"MEMORY": 1e9}, priority=5):
        assert submit_options({"GPU": 1}) == {
            "resources": {"GPU": 1, "MEMORY": 1e9},
            "priority": 5,
        }
    with dask.annotate(retries=3):
        assert submit_options({}, retries=1) == {"retries": 3}


def _task_restrictions(observer, key):
    def look(dask_scheduler, key=key):
        task = dask_scheduler.tasks.get(key)
        return None if task is None else (task.resource_restrictions, task.priority)

    return observer.run_on_scheduler(look)


def test_config_module_and_annotate_reach_the_scheduler(connection, observer):
    trainer = DaskModelTrainer(
        {
            "connection": connection,
            "resources": {"GPU": 1},
            "module_resources": {TEXT_CLASSIFIER_MODULE_ID: {"GPU": 0.5}},
        },
        "annotated",
    )
    with dask.annotate(priority=7):
        future = trainer.train(TextClassifier, epochs=300, sleep_per_epoch=0.02)
    restrictions, priority = poll(
        lambda: _task_restrictions(observer, future.training.key), 5, what="the task to arrive"
    )
    assert restrictions == {"GPU": 0.5}
    assert priority[0] == -7
    future.cancel()


def test_missing_resource_fails_at_the_call_with_zero_timeout(connection):
    trainer = DaskModelTrainer(
        {"connection": connection, "resources": {"TPU": 1}, "resource_timeout": 0}, "tpu0"
    )
    with pytest.raises(DaskBackendError, match="TPU"):
        trainer.train(TextClassifier, epochs=2)


def test_missing_resource_fails_within_resource_timeout(connection):
    trainer = DaskModelTrainer(
        {"connection": connection, "resources": {"TPU": 1}, "resource_timeout": "1s"}, "tpu1"
    )
    started = time.monotonic()
    future = trainer.train(TextClassifier, epochs=2)
    assert future.get_info().status is JobStatus.QUEUED
    future.wait(20)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    assert "TPU" in str(info.errors[0]) and "resource_timeout" in str(info.errors[0])
    assert time.monotonic() - started < 10
