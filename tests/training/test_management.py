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
from caikit_dask.training.events import (
    FINISHED_METADATA,
    LOG_STORE,
    LOG_TOPIC,
    STATE_TOPIC,
    dataset_name,
)
from caikit_dask.training.on_worker import is_running_on_worker

# A new process that lists, reads a log, follows one (printing each line as it comes)
# and deletes, as told in argv[2]; one JSON object per output line.
MANAGER = textwrap.dedent(
    """
    import json, sys
    from caikit_dask import DaskModelTrainer
    trainer = DaskModelTrainer({"connection": {"address": sys.argv[1]}}, "default")
    plan = json.loads(sys.argv[2])
    def say(**what):
        print(json.dumps(what), flush=True)
    listed = trainer.list_trainings()
    say(
        listed={f.id: f.get_info().status.name for f in listed},
        save_paths={f.id: f.save_path for f in listed},
        logs=trainer.get_model_future(plan["logs"]).logs(),
    )
    followed = trainer.get_model_future(plan["follow"])
    say(kept=len(followed.logs()))
    for line in followed.logs(follow=True):
        say(line=line)
    say(followed_status=followed.get_info().status.name)
    for training_id, delete_results in plan["delete"]:
        trainer.delete_training(training_id, delete_results=delete_results)
    say(deleted=True)
    """
)


def _start_manager(address, plan):
    return subprocess.Popen(
        [sys.executable, "-c", MANAGER, address, json.dumps(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _next_message(manager):
    line = manager.stdout.readline()
    if not line:
        manager.wait(30)
        raise AssertionError(f"the manager process ended: {manager.stderr.read()[-3000:]}")
    return json.loads(line)


def left_on_scheduler(observer, training_id, key):
    """What the scheduler still holds of one training: {what: detail}."""
    dataset = dataset_name(training_id)

    def look(dask_scheduler):
        store = dask_scheduler.plugins.get(LOG_STORE)
        task = dask_scheduler.tasks.get(key)
        events = [
            msg
            for topic in (STATE_TOPIC, LOG_TOPIC)
            for _, msg in dask_scheduler.get_events(topic)
            if isinstance(msg, dict) and msg.get("id") == training_id
        ]
        left = {
            "dataset": dataset in dask_scheduler.extensions["publish"].datasets,
            "task": task and f"{task.state}, wanted by {[c.client_key for c in task.who_wants]}",
            "finished marker": key in dask_scheduler.task_metadata.get(FINISHED_METADATA, {}),
            "log": store is not None and training_id in store.logs,
            "events": events,
        }
        return {name: str(detail) for name, detail in left.items() if detail}

    return observer.run_on_scheduler(look)


def _is_not_found(trainer, training_id):
    try:
        trainer.get_model_future(training_id)
    except CaikitCoreException as err:
        return err.status_code is CaikitCoreStatusCode.NOT_FOUND
    return False


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_new_process_lists_reads_logs_follows_and_deletes(
    local_cluster, connection, observer, tmp_path
):
    trainer = DaskModelTrainer({"connection": connection}, "manage")
    done = trainer.train(TextClassifier, epochs=4, save_path=str(tmp_path / "done"))
    done.wait(60)
    running = trainer.train(TextClassifier, epochs=4000, sleep_per_epoch=0.05)
    followed = trainer.train(TextClassifier, epochs=4000, sleep_per_epoch=0.005)
    poll(lambda: running.get_info().status is JobStatus.RUNNING, 30, what="running")
    running_key = running.training.key
    plan = {
        "logs": done.id,
        "follow": followed.id,
        "delete": [[done.id, True], [running.id, False]],
    }
    manager = _start_manager(local_cluster.scheduler_address, plan)
    try:
        seen = _next_message(manager)
        kept = _next_message(manager)["kept"]
        lines = []
        while len(lines) < kept + 2:  # two lines logged after the follow began, live
            lines.append(_next_message(manager)["line"])
        followed.cancel()
        while "line" in (message := _next_message(manager)):
            lines.append(message["line"])
        assert message == {"followed_status": "CANCELED"}  # the follow ended with it
        assert _next_message(manager) == {"deleted": True}
    finally:
        manager.kill()
        manager.communicate()

    assert seen["listed"][done.id] == "COMPLETED"
    assert seen["listed"][running.id] == "RUNNING"
    assert seen["save_paths"][done.id] == str(tmp_path / "done")
    assert "training done" in seen["logs"][-1] and "INFO CKD-EXMPL" in seen["logs"][-1]
    assert "epoch 4/4" in seen["logs"][-2]
    # Followed from the start of its log, each line once, in order.
    assert "training on" in lines[0]
    steps = [int(line.split("epoch ")[1].split("/")[0]) for line in lines if "epoch " in line]
    assert steps == list(range(400, 400 * len(steps) + 1, 400))
    assert "aborted" in lines[-1]  # the worker's last line, after the cancel
    assert lines == followed.logs()

    assert not (tmp_path / "done").exists()
    poll(
        lambda: not any(observer.run(is_running_on_worker, running.id).values()),
        10,
        what="the deleted training to stop on its worker",
    )
    assert left_on_scheduler(observer, done.id, done.training.key) == {}
    assert left_on_scheduler(observer, running.id, running_key) == {}
    elsewhere = DaskModelTrainer({"connection": {**connection, "timeout": "21s"}}, "elsewhere")
    assert _is_not_found(elsewhere, done.id) and _is_not_found(elsewhere, running.id)
    assert not {f.id for f in elsewhere.list_trainings()} & {done.id, running.id}
    trainer.delete_training(followed.id)


def test_logs_keep_the_last_log_lines_during_and_after_the_training(connection):
    trainer = DaskModelTrainer({"connection": connection, "log_lines": 3}, "few-lines")
    future = trainer.train(TextClassifier, epochs=200, sleep_per_epoch=0.01)
    poll(lambda: len(future.logs()) == 3, 30, what="three lines while it runs")
    assert future.get_info().status is JobStatus.RUNNING
    future.wait(60)
    lines = future.logs()
    assert len(lines) == 3
    assert "epoch 180/200" in lines[0] and "epoch 200/200" in lines[1]
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


def test_an_event_of_a_deleted_training_arriving_late_is_dropped(connection, observer):
    """A worker's last event and the delete travel on different connections: one sent
    before the delete may reach the scheduler after it, and must not stay there."""
    trainer = DaskModelTrainer({"connection": connection}, "late-event")
    future = trainer.train(TextClassifier, epochs=2)
    future.wait(60)
    key = future.training.key
    trainer.delete_training(future.id)
    late = {"id": future.id, "key": key, "state": "canceled", "time": 0.0}
    observer.log_event(STATE_TOPIC, late)
    observer.log_event(LOG_TOPIC, {**late, "line": "a late line"})
    observer.log_event("late-event-marker", {})  # same stream: arrives after both

    def marker_arrived(dask_scheduler):
        return bool(dask_scheduler.get_events("late-event-marker"))

    poll(lambda: observer.run_on_scheduler(marker_arrived), 10, what="the marker event")
    assert left_on_scheduler(observer, future.id, key) == {}
