"""cancel() stops the call on the worker; the job ends CANCELED."""

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import CaikitCoreException
from cluster_support import poll
from slow_model import SlowModel

from caikit_dask.prediction_jobs.on_scheduler import METADATA_KEY
from caikit_dask.prediction_jobs.on_worker import is_running_on_worker


def _running_anywhere(observer, job_id):
    return any(observer.run(is_running_on_worker, job_id).values())


def test_cancel_destroys_the_call_on_the_worker(predictor, observer):
    future = predictor.predict(SlowModel(), "run", "x", seconds=300)
    poll(lambda: _running_anywhere(observer, future.id), 30, what="the call to start")

    future.cancel()

    info = future.get_info()
    assert info.status is JobStatus.CANCELED
    assert info.completion_time is not None
    poll(lambda: not _running_anywhere(observer, future.id), 10, what="the call to stop")
    assert future.wait(10)
    with pytest.raises(CaikitCoreException, match="canceled"):
        future.result()


def test_a_job_canceled_before_it_starts_never_runs(make_predictor, observer):
    predictor = make_predictor()
    # Slow calls fill every worker thread; one more waits for a slot.
    slots = sum(observer.nthreads().values())
    busy = [predictor.predict(SlowModel(), "run", "x", seconds=300) for _ in range(slots)]
    poll(lambda: all(f.get_info().status is JobStatus.RUNNING for f in busy), 30, what="busy")
    waiting = predictor.predict(SlowModel(), "run", "x", seconds=300)
    assert waiting.get_info().status is JobStatus.QUEUED
    waiting.cancel()
    for future in busy:
        future.cancel()
    assert waiting.wait(10)
    assert waiting.get_info().status is JobStatus.CANCELED
    for future in busy:
        assert future.wait(10)
    assert observer.get_metadata([METADATA_KEY, waiting.id, "start_time"]) is None


def test_cancel_of_a_finished_job_changes_nothing(predictor):
    future = predictor.predict(SlowModel(), "run", "x")
    future.wait(30)
    before = future.get_info()
    future.cancel()
    after = future.get_info()
    assert after.status is JobStatus.COMPLETED
    assert after.completion_time == before.completion_time
    assert future.result().text == "x"
