"""Scheduler death and restart: fail fast naming it, reconnect, reload, report what was lost."""

import time

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.modules import ModuleConfig
from cluster_support import poll

from caikit_dask import DaskModelInitializer, DaskModelTrainer
from caikit_dask.errors import DaskBackendError
from caikit_dask.example import TextClassifier

pytestmark = pytest.mark.slow


def test_scheduler_killed_and_restarted(process_cluster, trained_model_dir):
    process_cluster.add_worker("a")
    process_cluster.add_worker("b")
    connection = {"address": process_cluster.address, "timeout": "60s"}
    trainer = DaskModelTrainer({"connection": connection}, "restart")
    initializer = DaskModelInitializer(
        {"connection": connection, "call_timeout": "30s", "health_check_period": "0.5s"},
        "restart",
    )
    model = initializer.init(ModuleConfig.load(trained_model_dir))
    expected = model.run("What a lovely day").label
    training = trainer.train(TextClassifier, epochs=2000, sleep_per_epoch=0.05)
    poll(lambda: training.get_info().status is JobStatus.RUNNING, 30, what="training running")

    process_cluster.kill_scheduler()

    def fails_naming_the_scheduler():
        started = time.monotonic()
        try:
            model.run("What a lovely day")
        except DaskBackendError as err:
            assert time.monotonic() - started < 10, "did not fail fast"
            return process_cluster.address in str(err)
        return False

    poll(fails_naming_the_scheduler, 30, interval=0.2, what="calls to fail naming the scheduler")
    with pytest.raises(DaskBackendError, match=process_cluster.address):
        trainer.train(TextClassifier, epochs=2)

    process_cluster.restart_scheduler()
    process_cluster.add_worker("c")
    process_cluster.add_worker("d")

    def answers():
        try:
            return model.run("What a lovely day").label == expected
        except (DaskBackendError, TimeoutError, OSError):
            return False

    poll(answers, 90, interval=0.5, what="the model to be reloaded on the new workers")
    assert {r["worker"] for r in model.replicas} <= set(process_cluster.worker_names().values())

    # What the model keeps on the scheduler was set up again on the new one: retiring
    # its worker moves it first (Dask alone refuses to retire a worker holding an actor).
    [holder] = [r["worker"] for r in model.replicas]
    assert holder in process_cluster.client.retire_workers([holder], close_workers=True)
    assert model.run("What a lovely day").label == expected
    assert [r["worker"] for r in model.replicas] != [holder]

    info = training.get_info()
    assert info.status is JobStatus.ERRORED
    assert "lost" in str(info.errors[0])
    again = trainer.train(TextClassifier, epochs=2)
    again.wait(60)
    assert again.get_info().status is JobStatus.COMPLETED
    model.close()
