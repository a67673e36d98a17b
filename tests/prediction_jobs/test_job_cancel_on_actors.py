"""Canceling a job on a DASK-loaded model stops its call inside the model's actor, and
the model goes on answering."""

import threading
from pathlib import Path

import pytest
from caikit.core.data_model import JobStatus
from cluster_support import poll, run_in_threads
from slow_model import SlowModel

from caikit_dask import DaskBackend
from caikit_dask.errors import PredictionCanceled
from caikit_dask.loading.actor.model_actor import ModelActor
from caikit_dask.loading.calls.stoppable import call_stoppable
from caikit_dask.loading.proxy import replica_set_of
from caikit_dask.prediction_jobs.on_worker import cancel_model_calls

LONG = 300  # seconds: far longer than any test waits, so only a cancel ends the call


@pytest.fixture
def slow_proxy(connection, tmp_path, slow_model_on_workers):
    SlowModel().save(str(tmp_path / "slow"))
    backend = DaskBackend({"connection": connection})
    proxy = backend.load(str(tmp_path / "slow"))
    yield proxy
    proxy.close()
    backend.stop()


def _calls_received(dask_worker) -> int:
    return sum(a.calls for a in dask_worker.state.actors.values() if isinstance(a, ModelActor))


def test_cancel_stops_the_running_call_in_the_actor(predictor, slow_proxy, tmp_path):
    progress = tmp_path / "progress"
    future = predictor.predict(slow_proxy, "run", "x", seconds=LONG, progress=str(progress))
    poll(progress.exists, 30, what="the call to run in the actor")

    future.cancel()

    assert future.wait(10)
    assert future.get_info().status is JobStatus.CANCELED
    ended = Path(f"{progress}.ended")
    poll(ended.exists, 10, what="the actor's call to stop")
    assert int(ended.read_text()) < LONG * 100  # it stopped midway
    # The pool threads live on: the model answers, up to its concurrency at once.
    answers = run_in_threads(lambda i: slow_proxy.run(f"y{i}", seconds=0.2).text, 4, 30)
    assert [answer for answer, _ in answers] == [f"y{i}" for i in range(4)]


def test_a_canceled_queued_call_never_starts(predictor, slow_proxy, observer, tmp_path):
    received_before = sum(observer.run(_calls_received).values())
    # Stoppable calls fill the model's 4 pool slots; the job's call then waits in its queue.
    busy = [tmp_path / f"busy{i}" for i in range(4)]
    outcomes: list = []

    def hold(i: int) -> None:
        try:
            call_stoppable(
                replica_set_of(slow_proxy),
                f"busy-{i}",
                "run",
                ("b",),
                {"seconds": LONG, "progress": str(busy[i])},
            )
        except PredictionCanceled as err:
            outcomes.append(err)

    threads = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    poll(lambda: all(path.exists() for path in busy), 30, what="4 busy calls")
    queued = tmp_path / "queued"
    future = predictor.predict(slow_proxy, "run", "q", seconds=LONG, progress=str(queued))
    poll(
        lambda: sum(observer.run(_calls_received).values()) == received_before + 5,
        30,
        what="the job's call to reach the actor",
    )

    future.cancel()

    assert future.wait(10)
    assert future.get_info().status is JobStatus.CANCELED
    for i in range(4):
        observer.run(cancel_model_calls, f"busy-{i}")
    for thread in threads:
        thread.join(10)
    assert len(outcomes) == 4  # each busy call was stopped and said so
    assert all(Path(f"{path}.ended").exists() for path in busy)
    assert slow_proxy.run("after").text == "after"
    assert not queued.exists() and not Path(f"{queued}.ended").exists()


def test_a_cancel_that_overtakes_its_call_stops_it(slow_proxy, observer, tmp_path):
    # The cancel can reach the actor before the call does (the job's task is stopped first).
    assert not any(observer.run(cancel_model_calls, "overtaken").values())
    progress = tmp_path / "progress"
    with pytest.raises(PredictionCanceled, match="overtaken"):
        call_stoppable(
            replica_set_of(slow_proxy), "overtaken", "run", ("x",), {"progress": str(progress)}
        )
    assert not progress.exists()
    assert slow_proxy.run("after").text == "after"
