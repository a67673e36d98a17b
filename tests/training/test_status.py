"""A training runs as a Dask task and reports QUEUED -> RUNNING -> a terminal state."""

import os
import threading

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.model_management.local_model_trainer import LocalModelTrainer
from cluster_support import poll

from caikit_dask import DaskModelTrainer
from caikit_dask.example import TextClassifier


@pytest.fixture
def trainer(connection):
    return DaskModelTrainer({"connection": connection}, "default")


def test_train_returns_a_future_and_the_model_matches_a_local_training(trainer, tmp_path):
    future = trainer.train(TextClassifier, epochs=20, save_path=str(tmp_path), model_name="m")
    assert future.get_info().status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED)
    future.wait()
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED, info.errors
    assert info.submission_time <= info.completion_time
    assert os.path.exists(os.path.join(future.save_path, "config.yml"))
    remote = future.load()
    local = TextClassifier.train(epochs=20)
    for text in ["What a wonderful day", "This is terrible and slow"]:
        assert remote.run(text).label == local.run(text).label
        assert remote.run(text).score == pytest.approx(local.run(text).score)


@pytest.mark.parametrize("save_with_id", [False, True])
@pytest.mark.parametrize("model_name", [None, "my-model"])
def test_save_path_composes_as_the_local_trainer_does(trainer, tmp_path, save_with_id, model_name):
    future = trainer.train(
        TextClassifier,
        epochs=2,
        save_path=str(tmp_path),
        save_with_id=save_with_id,
        model_name=model_name,
    )
    expected = LocalModelTrainer.LocalModelFuture._save_path_with_id(
        str(tmp_path), save_with_id, future.id, model_name, None
    )
    assert future.save_path == expected
    assert trainer.get_trainer_name(future.id) == "default"
    future.wait()
    assert os.path.exists(os.path.join(expected, "config.yml"))


def test_status_goes_queued_running_completed(connection):
    """Both GPU slots busy: a third GPU training stays QUEUED until one frees."""
    trainer = DaskModelTrainer({"connection": connection, "resources": {"GPU": 1}}, "gpu")
    blockers = [trainer.train(TextClassifier, epochs=400, sleep_per_epoch=0.05) for _ in range(2)]
    poll(lambda: all(b.get_info().status is JobStatus.RUNNING for b in blockers), 30, what="run")
    queued = trainer.train(TextClassifier, epochs=2)
    seen = [queued.get_info().status]
    assert seen[0] is JobStatus.QUEUED
    for blocker in blockers:
        blocker.cancel()
    queued.wait()
    assert queued.get_info().status is JobStatus.COMPLETED
    assert all(b.get_info().status is JobStatus.CANCELED for b in blockers)


def test_errors_keep_the_original_exception(trainer):
    future = trainer.train(TextClassifier, epochs=0)
    future.wait()
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    assert isinstance(info.errors[0], ValueError)
    assert "epochs must be >= 1" in str(info.errors[0])
    assert info.completion_time is not None
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        future.load()


def test_wait_returns_when_the_task_ends_even_from_many_waiters(trainer):
    future = trainer.train(TextClassifier, epochs=5)
    done = []
    threads = [threading.Thread(target=lambda: done.append(future.wait())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(done) == 4
    assert future.get_info().status is JobStatus.COMPLETED


def test_external_training_id_is_honoured_and_a_running_duplicate_refused(trainer):
    future = trainer.train(
        TextClassifier, epochs=400, sleep_per_epoch=0.05, external_training_id="ext-1"
    )
    assert future.id == "ext-1"
    with pytest.raises(ValueError, match="currently running"):
        trainer.train(TextClassifier, epochs=2, external_training_id="ext-1")
    future.cancel()
    again = trainer.train(TextClassifier, epochs=2, external_training_id="ext-1")
    again.wait()
    assert trainer.get_model_future("ext-1").get_info().status is JobStatus.COMPLETED


def test_training_logs_reach_the_caller(trainer, caplog):
    caplog.set_level("INFO")
    future = trainer.train(TextClassifier, epochs=3)
    future.wait()
    poll(
        lambda: any(f"[training {future.id}" in r.getMessage() for r in caplog.records),
        10,
        what="forwarded training log records",
    )
