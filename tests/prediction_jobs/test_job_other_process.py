"""A job is found by id from another process; ended jobs go after retention_duration."""

import json
import subprocess
import sys
import time

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from cluster_support import worker_env
from slow_model import SlowModel

from caikit_dask.example import EchoWithContext
from caikit_dask.prediction_jobs.on_scheduler import dataset_name

LOOK_UP = """
import json, sys
from caikit_dask import DaskJobPredictor
predictor = DaskJobPredictor({"connection": {"address": sys.argv[1]}}, "jobs")
future = predictor.get_prediction_future(sys.argv[2])
if sys.argv[3] == "cancel":
    future.cancel()
future.wait(60)
info = future.get_info()
out = {"status": info.status.name, "submitted": info.submission_time.isoformat()}
if info.status.name == "COMPLETED":
    out["text"] = future.result().text
print(json.dumps(out))
predictor.close()
"""


def _in_new_process(scheduler: str, job_id: str, action: str = "result") -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOOK_UP, scheduler, job_id, action],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_new_process_finds_the_job_by_id_and_fetches_its_result(predictor, local_cluster):
    future = predictor.predict(EchoWithContext(prefix="far:"), "run", "away")
    seen = _in_new_process(local_cluster.scheduler_address, future.id)
    assert seen["status"] == "COMPLETED"
    assert seen["text"] == "far:away"
    assert seen["submitted"] == future.get_info().submission_time.isoformat()


def test_a_new_process_cancels_the_job(predictor, local_cluster):
    future = predictor.predict(SlowModel(), "run", "x", seconds=300)
    seen = _in_new_process(local_cluster.scheduler_address, future.id, "cancel")
    assert seen["status"] == "CANCELED"
    assert future.wait(10)
    assert future.get_info().status is JobStatus.CANCELED


def test_an_ended_job_is_forgotten_after_retention(make_predictor, observer):
    predictor = make_predictor(retention_duration="1s")
    future = predictor.predict(EchoWithContext(), "run", "x")
    future.wait(30)
    assert dataset_name(future.id) in observer.list_datasets()
    time.sleep(1.2)  # the retention itself is what is under test
    with pytest.raises(CaikitCoreException) as caught:
        predictor.get_prediction_future(future.id)
    assert caught.value.status_code is CaikitCoreStatusCode.NOT_FOUND
    assert dataset_name(future.id) not in observer.list_datasets()
