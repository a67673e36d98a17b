"""Training management from any process: list every training, read its log, delete it."""

import json
import subprocess
import sys
import textwrap

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from cluster_support import poll

from caikit_dask import DaskModelTrainer
from caikit_dask.example import TextClassifier
from caikit_dask.training.events import LOG_STORE, STATE_TOPIC, dataset_name
from caikit_dask.training.worker_side import is_running_on_worker

# A new process that lists, reads logs, follows one and deletes, as told in argv[2].
MANAGER = textwrap.dedent(
    """
    import json, sys
    from caikit_dask import DaskModelTrainer
    trainer = DaskModelTrainer({"connection": {"address": sys.argv[1]}}, "default")
    plan, out = json.loads(sys.argv[2]), {}
    listed = trainer.list_trainings()
    out["listed"] = {f.id: f.get_info().status.name for f in listed}
    out["save_paths"] = {f.id: f.save_path for f in listed}
    out["logs"] = trainer.get_model_future(plan["logs"]).logs()
    out["followed"] = list(trainer.get_model_future(plan["follow"]).logs(follow=True))
    out["followed_status"] = trainer.get_model_future(plan["follow"]).get_info().status.name
    for training_id, delete_results in plan["delete"]:
        trainer.delete_training(training_id, delete_results=delete_results)
    print(json.dumps(out))
    """
)


def _manage_from_another_process(address, plan):
    result = subprocess.run(
        [sys.executable, "-c", MANAGER, address, json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def left_on_scheduler(observer, training_id, key):
    """What the scheduler still holds of one training."""
    dataset = dataset_name(training_id)

    def look(dask_scheduler):
        store = dask_scheduler.plugins.get(LOG_STORE)
        publish = dask_scheduler.extensions["publish"]
        finished = dask_scheduler.task_metadata.get("caikit-dask-finished-trainings", {})
        left = {
            "dataset": dataset in publish.datasets,
            "task": key in dask_scheduler.tasks
            and (
                dask_scheduler.tasks[key].state,
                [c.client_key for c in dask_scheduler.tasks[key].who_wants],
            ),
            "finished marker": key in finished,
            "log": store is not None and training_id in store.logs,
            "events": any(
                isinstance(msg, dict) and msg.get("id") == training_id
                for topic in (STATE_TOPIC, "caikit-dask-training-log")
                for _, msg in dask_scheduler.get_events(topic)
            ),
        }
        return sorted((name, str(there)) for name, there in left.items() if there)

    return observer.run_on_scheduler(look)


def _is_not_found(trainer, training_id):
    try:
        trainer.get_model_future(training_id)
    except CaikitCoreException as err:
        return err.status_code is CaikitCoreStatusCode.NOT_FOUND
    return False


@pytest.mark.slow
def test_a_new_process_lists_reads_logs_follows_and_deletes(
    local_cluster, connection, observer, tmp_path
):
    trainer = DaskModelTrainer({"connection": connection}, "manage")
    done = trainer.train(TextClassifier, epochs=4, save_path=str(tmp_path / "done"))
    done.wait(60)
    running = trainer.train(TextClassifier, epochs=4000, sleep_per_epoch=0.05)
    # Long enough to be still running once the new process has started and listed it.
    followed = trainer.train(TextClassifier, epochs=200, sleep_per_epoch=0.05)
    poll(lambda: running.get_info().status is JobStatus.RUNNING, 30, what="running")
    running_key = running.training.key

    seen = _manage_from_another_process(
        local_cluster.scheduler_address,
        {
            "logs": done.id,
            "follow": followed.id,
            "delete": [[done.id, True], [running.id, False]],
        },
    )

    assert seen["listed"][done.id] == "COMPLETED"
    assert seen["listed"][running.id] == "RUNNING"
    assert seen["listed"][followed.id] in ("QUEUED", "RUNNING")
    assert seen["save_paths"][done.id] == str(tmp_path / "done")
    assert "training done" in seen["logs"][-1] and "INFO CKD-EXMPL" in seen["logs"][-1]
    assert "epoch 4/4" in seen["logs"][-2]
    # Followed from wherever it was to its end: every epoch line, in order, once.
    assert seen["followed_status"] == "COMPLETED"
    assert "training done" in seen["followed"][-1]
    epochs = [line for line in seen["followed"] if "epoch " in line]
    assert [line.split("epoch ")[1].split()[0] for line in epochs] == [
        f"{n}/200" for n in range(20, 201, 20)
    ]
    assert seen["followed"] == followed.logs()

    assert not (tmp_path / "done").exists()
    poll(
        lambda: not any(observer.run(is_running_on_worker, running.id).values()),
        10,
        what="the deleted training to stop on its worker",
    )
    assert left_on_scheduler(observer, done.id, done.training.key) == []
    assert left_on_scheduler(observer, running.id, running_key) == []
    elsewhere = DaskModelTrainer({"connection": {**connection, "timeout": "21s"}}, "elsewhere")
    assert _is_not_found(elsewhere, done.id) and _is_not_found(elsewhere, running.id)
    assert {f.id for f in elsewhere.list_trainings()} >= {followed.id}
    assert not {f.id for f in elsewhere.list_trainings()} & {done.id, running.id}


def test_logs_keep_the_last_log_lines_during_and_after_the_training(connection):
    trainer = DaskModelTrainer({"connection": connection, "log_lines": 3}, "few-lines")
    future = trainer.train(TextClassifier, epochs=400, sleep_per_epoch=0.01)
    poll(lambda: len(future.logs()) == 3, 30, what="three lines while it runs")
    assert future.get_info().status is JobStatus.RUNNING
    future.wait(60)
    lines = future.logs()
    assert len(lines) == 3
    assert "epoch 360/400" in lines[0] and "epoch 400/400" in lines[1]
    assert "training done" in lines[2]
    trainer.delete_training(future.id)


def test_following_a_training_ends_when_it_is_canceled(connection):
    trainer = DaskModelTrainer({"connection": connection}, "follow-cancel")
    future = trainer.train(TextClassifier, epochs=4000, sleep_per_epoch=0.05)
    lines = future.logs(follow=True)
    first = next(lines)  # blocks until the training logs its first line
    assert "training on" in first
    future.cancel()
    rest = list(lines)  # ends: the training ended
    assert all("training done" not in line for line in rest)
    assert future.get_info().status is JobStatus.CANCELED


def test_listing_in_the_submitting_process_returns_its_own_futures(connection):
    trainer = DaskModelTrainer({"connection": connection}, "own")
    future = trainer.train(TextClassifier, epochs=2)
    future.training.published.result(10)
    listed = {f.id: f for f in trainer.list_trainings()}
    assert listed[future.id] is future
    future.wait(60)
    assert listed[future.id].get_info().status is JobStatus.COMPLETED
    trainer.delete_training(future.id)
    assert future.id not in {f.id for f in trainer.list_trainings()}


def test_a_listed_training_is_found_without_reattaching(connection):
    trainer = DaskModelTrainer({"connection": connection}, "prime")
    future = trainer.train(TextClassifier, epochs=2)
    future.wait(60)
    future.training.published.result(10)
    reader = DaskModelTrainer({"connection": {**connection, "timeout": "22s"}}, "reader")
    listed = {f.id: f for f in reader.list_trainings()}
    found = reader.get_model_future(future.id)
    assert found is listed[future.id]  # the listing's own future: no reattach made
    assert found.get_info().status is JobStatus.COMPLETED
    assert found.training.client is reader.backend.client
    trainer.delete_training(future.id)


def test_deleting_an_unknown_training_is_not_found(connection):
    trainer = DaskModelTrainer({"connection": connection}, "unknown")
    with pytest.raises(CaikitCoreException) as caught:
        trainer.delete_training("no-such-training")
    assert caught.value.status_code is CaikitCoreStatusCode.NOT_FOUND


def test_retention_forgets_the_log_too(connection, observer):
    trainer = DaskModelTrainer({"connection": connection, "retention_duration": "1s"}, "ret-log")
    future = trainer.train(TextClassifier, epochs=2)
    future.wait(60)
    assert future.logs()
    key = future.training.key
    poll(lambda: _is_not_found(trainer, future.id), 10, interval=0.2, what="the purge")
    assert "log" not in left_on_scheduler(observer, future.id, key)
