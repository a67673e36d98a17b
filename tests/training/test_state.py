"""A training's state machine on its own: events, scheduler facts and the future's status.

No cluster needed: ``TrainingState`` is plain data; the tests that run trainings on
a LocalCluster check the same transitions end to end.
"""

from caikit.core.data_model import JobStatus

from caikit_dask.errors import TrainingCanceled, TrainingResultLost
from caikit_dask.training import events
from caikit_dask.training.state import TrainingState


def _event(state, key="k1", **extra):
    return {"id": "t", "key": key, "state": state, "time": 100.0, **extra}


def _no_exception():
    raise AssertionError("the exception is read only when the future failed")


def test_queued_until_the_running_event_then_running_on_its_worker():
    state = TrainingState("k1")
    assert state.status("pending", _no_exception) is JobStatus.QUEUED
    state.apply_event(_event(events.RUNNING, worker="tcp://w1"))
    assert state.status("pending", _no_exception) is JobStatus.RUNNING
    assert (state.start_time, state.worker) == (100.0, "tcp://w1")


def test_events_of_an_earlier_training_with_the_same_id_are_ignored():
    state = TrainingState("k2")
    state.apply_event(_event(events.RUNNING, key="k1"))
    state.apply_event(_event(events.CANCELED, key="k1"))
    assert state.status("pending", _no_exception) is JobStatus.QUEUED


def test_finished_once_stays_completed_when_its_result_is_lost():
    state = TrainingState("k1")
    state.apply_event(_event(events.FINISHED))
    assert state.status("lost", _no_exception) is JobStatus.COMPLETED
    assert state.completion_time == 100.0


def test_the_future_s_exception_tells_cancel_and_lost_result_from_errors():
    state = TrainingState("k1")
    assert state.status("error", lambda: TrainingCanceled("x")) is JobStatus.CANCELED
    assert state.status("error", lambda: TrainingResultLost("x")) is JobStatus.COMPLETED
    assert state.status("error", lambda: ValueError("x")) is JobStatus.ERRORED
    assert state.status("cancelled", _no_exception) is JobStatus.ERRORED


def test_the_caller_s_decision_wins_unless_the_task_ended_first():
    state = TrainingState("k1")
    state.decide(JobStatus.ERRORED, RuntimeError("no GPU"), task_done=True)
    assert state.outcome is None and state.done.is_set()
    state.decide(JobStatus.CANCELED, None, task_done=False)
    assert state.status("error", _no_exception) is JobStatus.CANCELED
    state.decide(JobStatus.ERRORED, RuntimeError("later"), task_done=False)
    assert state.outcome is JobStatus.CANCELED and state.errors == []


def test_worker_deaths_beyond_retries_are_an_error():
    state = TrainingState("k1", retries=1)
    assert state.worker_died() is False
    assert state.worker_died() is True


def test_scheduler_facts_fill_what_the_event_log_dropped():
    state = TrainingState("k1")
    facts = {"finished_at": None, "task_state": "processing", "processing_on": "tcp://w2"}
    state.apply_scheduler_facts(facts)
    assert state.status("pending", _no_exception) is JobStatus.RUNNING
    assert state.worker == "tcp://w2"
    state.apply_scheduler_facts({**facts, "finished_at": 200.0, "task_state": "memory"})
    assert state.status("lost", _no_exception) is JobStatus.COMPLETED
    assert state.completion_time == 200.0


def test_the_echo_of_the_caller_s_own_announcement_is_not_applied_again():
    state = TrainingState("k1")
    state.decide(JobStatus.CANCELED, None, task_done=True)  # refused: the task ended first
    announcement = _event(events.CANCELED)
    state.expect_echo(announcement)
    state.apply_event(dict(announcement))  # its echo, a copy off the wire
    assert state.outcome is None
    assert state.status("finished", _no_exception) is JobStatus.COMPLETED
    other_client = TrainingState("k1")  # another client applies the announcement
    other_client.apply_event(dict(announcement))
    assert other_client.status("pending", _no_exception) is JobStatus.CANCELED
