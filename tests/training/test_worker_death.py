"""kill -9 of the worker running a training: ERRORED with the reason, or rerun with retries."""

import pytest
from caikit.core.data_model import JobStatus
from cluster_support import poll

from caikit_dask import DaskModelTrainer
from caikit_dask.example import TextClassifier

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("retries", [0, 1])
def test_worker_killed_during_training(process_cluster, retries):
    process_cluster.add_worker("a")
    process_cluster.add_worker("b")
    trainer = DaskModelTrainer(
        {"connection": {"address": process_cluster.address}, "retries": retries}, "killed"
    )
    future = trainer.train(TextClassifier, epochs=40, sleep_per_epoch=0.05)
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 30, what="running")
    victim = future.training.worker
    process_cluster.kill_worker(process_cluster.worker_name_at(victim))
    future.wait(60)
    info = future.get_info()
    if retries == 0:
        assert info.status is JobStatus.ERRORED
        assert victim in str(info.errors[0]) and "died" in str(info.errors[0])
    else:
        assert info.status is JobStatus.COMPLETED, info.errors
        assert future.training.worker != victim
        assert future.load().run("lovely").label


def test_losing_a_finished_trainings_worker_does_not_train_again(process_cluster, tmp_path):
    process_cluster.add_worker("a")
    process_cluster.add_worker("b")
    trainer = DaskModelTrainer({"connection": {"address": process_cluster.address}}, "lost")
    future = trainer.train(TextClassifier, epochs=5, save_path=str(tmp_path / "m"))
    future.wait(60)
    holder = future.training.worker
    assert future.get_info().status is JobStatus.COMPLETED
    process_cluster.kill_worker(process_cluster.worker_name_at(holder))
    poll(
        lambda: (
            future.training.future.status in ("error", "finished")
            and holder not in process_cluster.worker_names().values()
        ),
        30,
        what="the lost result to settle",
    )
    assert future.get_info().status is JobStatus.COMPLETED
    starts = [
        msg
        for _, msg in process_cluster.client.get_events("caikit-dask-training")
        if msg.get("key") == future.training.key and msg.get("state") == "running"
    ]
    assert len(starts) == 1, "the finished training ran again"
    assert (tmp_path / "m" / "config.yml").exists()
    with pytest.raises(RuntimeError, match="load it from its save_path"):
        future.load()
