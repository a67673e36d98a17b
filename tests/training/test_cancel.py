"""cancel() stops the training on the worker and frees its resources."""

import asyncio
import queue

from caikit.core.data_model import JobStatus
from cluster_support import poll

from caikit_dask import DaskModelTrainer
from caikit_dask.example import TextClassifier
from caikit_dask.training import events
from caikit_dask.training.monitor import TrainingMonitor
from caikit_dask.training.on_worker import is_running_on_worker


def test_cancel_stops_the_work_on_the_worker_and_frees_the_gpu(connection, observer):
    trainer = DaskModelTrainer({"connection": connection, "resources": {"GPU": 1}}, "cancel")
    futures = [trainer.train(TextClassifier, epochs=2000, sleep_per_epoch=0.05) for _ in range(2)]
    poll(lambda: all(f.get_info().status is JobStatus.RUNNING for f in futures), 30, what="run")
    assert any(observer.run(is_running_on_worker, futures[0].id).values())

    futures[0].cancel()

    assert futures[0].get_info().status is JobStatus.CANCELED
    poll(
        lambda: not any(observer.run(is_running_on_worker, futures[0].id).values()),
        10,
        what="the training thread to stop on the worker",
    )
    # The freed GPU slot takes a new GPU training at once (the other is still busy).
    follow_up = trainer.train(TextClassifier, epochs=2)
    follow_up.wait(30)
    assert follow_up.get_info().status is JobStatus.COMPLETED
    assert futures[1].get_info().status is JobStatus.RUNNING
    futures[1].cancel()
    assert futures[0].get_info().completion_time is not None


def test_cancel_of_a_finished_training_changes_nothing(connection):
    trainer = DaskModelTrainer({"connection": connection}, "cancel-done")
    future = trainer.train(TextClassifier, epochs=2)
    future.wait()
    before = future.get_info()
    future.cancel()
    after = future.get_info()
    assert after.status is JobStatus.COMPLETED
    assert after.completion_time == before.completion_time


def test_a_cancel_decided_after_the_task_ended_is_not_applied_by_its_echo(connection):
    trainer = DaskModelTrainer({"connection": connection}, "cancel-echo")
    future = trainer.train(TextClassifier, epochs=2)
    future.wait()
    training = future.training
    heard: queue.Queue = queue.Queue()
    TrainingMonitor.for_client(training.client).listen(training.id, heard)
    try:
        training.end(JobStatus.CANCELED)  # as a cancel racing the task's end would
        while heard.get(timeout=10).get("state") != events.CANCELED:
            pass  # the announcement came back to this client...
        training.client.sync(asyncio.sleep, 0)  # ...and its handler has run
    finally:
        TrainingMonitor.for_client(training.client).unlisten(training.id, heard)
    assert future.get_info().status is JobStatus.COMPLETED
