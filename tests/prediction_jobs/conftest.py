"""A DASK job predictor on the session's LocalCluster, whose workers also get the
test-only ``slow_model`` library (uploaded, imported where a job needs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from caikit_dask import DaskJobPredictor

SLOW_MODEL_FILE = Path(__file__).with_name("slow_model.py")


@pytest.fixture(scope="session")
def slow_model_on_workers(observer):
    observer.upload_file(str(SLOW_MODEL_FILE), load=False)


@pytest.fixture
def make_predictor(connection, slow_model_on_workers):
    predictors = []

    def make(name: str = "jobs", **config) -> DaskJobPredictor:
        predictor = DaskJobPredictor({"connection": connection, **config}, name)
        predictors.append(predictor)
        return predictor

    yield make
    for predictor in predictors:
        predictor.close()


@pytest.fixture
def predictor(make_predictor):
    return make_predictor()
