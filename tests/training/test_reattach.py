"""A training outlives its client: another process finds it by id; retention purges it."""

import json
import subprocess
import sys
import textwrap

import dask
import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from cluster_support import poll
from distributed import Client, LocalCluster

from caikit_dask import DaskModelTrainer
from caikit_dask.connection import DaskConnection
from caikit_dask.example import TextClassifier
from caikit_dask.training.submit import reattach

READ_STATUS = textwrap.dedent(
    """
    import json, sys
    from caikit_dask import DaskModelTrainer
    trainer = DaskModelTrainer({"connection": {"address": sys.argv[1]}}, "default")
    future = trainer.get_model_future(sys.argv[2])
    info = future.get_info()
    if sys.argv[3] == "wait":
        future.wait()
        info = future.get_info()
        model = future.load()
        print(json.dumps({"status": info.status.name, "label": model.run("lovely").label}))
    else:
        print(json.dumps({"status": info.status.name, "worker": future.training.worker}))
    """
)


def _other_process(address, training_id, mode):
    result = subprocess.run(
        [sys.executable, "-c", READ_STATUS, address, training_id, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_another_process_sees_a_running_training_and_its_result(local_cluster, connection):
    trainer = DaskModelTrainer({"connection": connection}, "default")
    # Runs until canceled, however long the new process takes to start.
    running = trainer.train(TextClassifier, epochs=100_000, sleep_per_epoch=0.05)
    poll(lambda: running.get_info().status is JobStatus.RUNNING, 30, what="running")
    try:
        seen = _other_process(local_cluster.scheduler_address, running.id, "status")
    finally:
        running.cancel()
    assert seen == {"status": "RUNNING", "worker": running.training.worker}
    future = trainer.train(TextClassifier, epochs=60, sleep_per_epoch=0.05)
    finished = _other_process(local_cluster.scheduler_address, future.id, "wait")
    assert finished["status"] == "COMPLETED"
    assert finished["label"] == future.load().run("lovely").label


def test_unknown_training_id_is_not_found(connection):
    trainer = DaskModelTrainer({"connection": connection}, "default")
    with pytest.raises(CaikitCoreException) as caught:
        trainer.get_model_future("no-such-training")
    assert caught.value.status_code is CaikitCoreStatusCode.NOT_FOUND


def test_retention_purges_finished_trainings_and_their_results(connection, tmp_path):
    trainer = DaskModelTrainer({"connection": connection, "retention_duration": "1s"}, "retain")
    future = trainer.train(TextClassifier, epochs=2, save_path=str(tmp_path / "out"))
    future.wait()
    assert (tmp_path / "out" / "config.yml").exists()

    def purged():
        try:
            trainer.get_model_future(future.id)
        except CaikitCoreException as err:
            return err.status_code is CaikitCoreStatusCode.NOT_FOUND
        return False

    poll(purged, 10, interval=0.2, what="the training to be purged")
    assert not (tmp_path / "out").exists()


def test_reattach_reads_trainings_whose_events_the_scheduler_dropped():
    """The scheduler keeps few events per topic; finished trainings must still read COMPLETED."""
    with dask.config.set({"distributed.admin.low-level-log-length": 6}):
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    connection = {"address": cluster.scheduler_address}
    try:
        trainer = DaskModelTrainer({"connection": connection}, "evicted")
        futures = [trainer.train(TextClassifier, epochs=1) for _ in range(5)]
        for future in futures:
            future.wait()
        with Client(cluster.scheduler_address, set_as_default=False) as other:
            first = reattach(other, futures[0].id)
            info = first.info()
            assert info.status is JobStatus.COMPLETED
            original = futures[0].get_info().completion_time
            assert abs((info.completion_time - original).total_seconds()) < 0.5
    finally:
        DaskConnection.close_all()
        cluster.close()


def _find_from_another_client(observer, training_id):
    try:
        return reattach(observer, training_id)
    except CaikitCoreException as err:
        if err.status_code is CaikitCoreStatusCode.NOT_FOUND:
            return None
        raise


def test_another_client_finds_a_training_soon_after_train_returns(connection, observer):
    trainer = DaskModelTrainer({"connection": connection}, "visible")
    future = trainer.train(TextClassifier, epochs=2)
    found = poll(lambda: _find_from_another_client(observer, future.id), 5, what="the record")
    assert found.key == future.training.key
    future.wait()


def test_rerunning_an_external_id_keeps_the_new_training_findable(connection, observer):
    trainer = DaskModelTrainer({"connection": connection}, "rerun")
    first = trainer.train(TextClassifier, epochs=1, external_training_id="nightly")
    first.wait()
    second = trainer.train(TextClassifier, epochs=1, external_training_id="nightly")
    second.wait()
    assert second.training.key != first.training.key
    found = poll(lambda: _find_from_another_client(observer, "nightly"), 5, what="the record")
    assert found.key == second.training.key
    assert found.info().status is JobStatus.COMPLETED
