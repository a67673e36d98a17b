"""A trained model comes back from the worker as its saved archive when that loads back, and
pickled when it doesn't, so ``load()`` always returns the trained model."""

import pickle
from pathlib import Path

import pytest
from half_saved_model import LOAD_ATTEMPTS, HalfSavedModel

from caikit_dask import DaskModelTrainer
from caikit_dask.example import EchoWithContext
from caikit_dask.training.shipping import ShippedModel, _from_archive

HALF_SAVED_FILE = Path(__file__).with_name("half_saved_model.py")


def test_a_model_whose_save_cannot_be_loaded_back_comes_back_pickled(
    connection, observer, tmp_path
):
    observer.upload_file(str(HALF_SAVED_FILE), load=False)
    trainer = DaskModelTrainer({"connection": connection}, "half-saved")
    save_path = str(tmp_path / "half-saved")
    future = trainer.train(HalfSavedModel, base="base:", suffix=":trained", save_path=save_path)
    future.wait()
    with pytest.raises(ValueError, match="base not provided"):
        HalfSavedModel.load(save_path)  # what the worker saved can't be served on its own
    model = future.load()
    assert isinstance(model, HalfSavedModel)
    assert model.run("x").text == "base:x:trained"


def test_a_loadable_model_travels_as_its_archive():
    shipped = ShippedModel(EchoWithContext(prefix="p:"))
    assert shipped.__reduce__()[0] is _from_archive
    assert pickle.loads(pickle.dumps(shipped)).run("x").text == "p:x"


def test_the_archive_is_tried_on_the_first_send_only():
    LOAD_ATTEMPTS.clear()
    shipped = ShippedModel(HalfSavedModel("base:", ":trained"))
    first = pickle.dumps(shipped)
    tried = len(LOAD_ATTEMPTS)
    assert tried  # caikit's loader tried the archive
    assert pickle.dumps(shipped) and len(LOAD_ATTEMPTS) == tried
    assert pickle.loads(first).run("x").text == "base:x:trained"
