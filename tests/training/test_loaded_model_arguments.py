"""A DASK-loaded model as a training argument: a module composed of other modules trains on
it, saves it inside itself, and the result loads and runs through DASK again.

The proxy cannot travel (it holds actors); it crosses as a reference to its saved model and
the training's worker loads the model itself, as caikit's LOCAL trainer hands a spawned
training process the model's saved bytes.
"""

from __future__ import annotations

import os

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.modules import ModuleConfig
from parity_testlib import Block, Composite

from caikit_dask import DaskModelInitializer, DaskModelTrainer


@pytest.fixture
def initializer(connection):
    return DaskModelInitializer({"connection": connection}, "blocks")


@pytest.fixture
def trainer(connection):
    return DaskModelTrainer({"connection": connection}, "composites")


@pytest.fixture
def block(initializer, tmp_path):
    path = str(tmp_path / "block")
    Block("teacher").save(path)
    model = initializer.init(ModuleConfig.load(path))
    yield model
    model.close()


def test_a_module_trains_on_a_loaded_model_and_serves_through_dask(
    block, trainer, initializer, tmp_path
):
    served_by = block.run("x").score  # the pid of the worker serving the block
    future = trainer.train(Composite, block=block, save_path=str(tmp_path / "composite"))
    future.wait(60)
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED, info.errors
    trained = future.load()
    assert isinstance(trained, Composite) and isinstance(trained.block, Block)
    assert trained.run("x").label == "teacher+teacher"  # used during training, and kept
    assert trained.run("x").score == os.getpid()  # its own copy, shipped back here
    composite = initializer.init(ModuleConfig.load(future.save_path))
    try:
        answer = composite.run("x")
        assert answer.label == "teacher+teacher"
        assert answer.score != os.getpid()  # answered on a worker
    finally:
        composite.close()
    assert block.run("x").score == served_by  # the served block is untouched


def test_loaded_models_inside_containers_travel_too(block, trainer, tmp_path):
    # a proxy anywhere in the arguments crosses as a reference
    future = trainer.train(Composite, block={"the": [block]}["the"][0], suffix="!")
    future.wait(60)
    assert future.load().run("x").label == "teacher!"


def test_a_closed_model_is_refused_at_the_call(initializer, trainer, tmp_path):
    path = str(tmp_path / "closed")
    Block().save(path)
    model = initializer.init(ModuleConfig.load(path))
    model.close()
    with pytest.raises(TypeError, match="argument 'block' .* was closed"):
        trainer.train(Composite, block=model)
