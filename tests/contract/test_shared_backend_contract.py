"""The ADR 018 contract, held by the in-process reference and by Dask alike."""

import pytest
from caikit.core import ModuleBase
from caikit.core.module_backends.base import BackendBase
from caikit.core.registries import module_backend_classes, module_backend_types

from caikit_dask import (
    DaskBackend,
    LocalSharedBackend,
    SharedLoadBackend,
    SharedTrainBackend,
)
from caikit_dask.example import TextClassifier

TEXTS = ["What a wonderful day", "This is terrible and slow"]


@pytest.fixture(params=["LOCAL_SHARED", "DASK"])
def backend(request, connection):
    if request.param == "DASK":
        instance = DaskBackend({"connection": connection, "replicas": 1})
    else:
        instance = LocalSharedBackend()
    instance.start()
    yield instance
    instance.stop()


def test_backend_types_are_registered_with_caikit():
    for backend_class in (DaskBackend, LocalSharedBackend):
        assert backend_class.backend_type in module_backend_types()
        assert module_backend_classes()[backend_class.backend_type] is backend_class


def test_is_both_shared_backends(backend):
    assert isinstance(backend, BackendBase)
    assert isinstance(backend, SharedTrainBackend)
    assert isinstance(backend, SharedLoadBackend)
    assert backend.is_started


def test_train_blocks_and_returns_the_trained_model(backend):
    model = backend.train(TextClassifier, epochs=20, seed=3)
    assert isinstance(model, TextClassifier)
    reference = TextClassifier.train(epochs=20, seed=3)
    for text in TEXTS:
        assert model.run(text).to_dict() == reference.run(text).to_dict()


def test_train_errors_are_the_modules_own(backend):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        backend.train(TextClassifier, epochs=0)


def test_load_returns_a_runnable_module(backend, trained_model_dir):
    model = backend.load(trained_model_dir)
    assert isinstance(model, ModuleBase)
    assert model.MODULE_ID == TextClassifier.MODULE_ID
    reference = TextClassifier.load(trained_model_dir)
    for text in TEXTS:
        assert model.run(text).to_dict() == reference.run(text).to_dict()
    assert [r.to_dict() for r in model.run_stream(TEXTS[0] + ". " + TEXTS[1])] == [
        r.to_dict() for r in reference.run_stream(TEXTS[0] + ". " + TEXTS[1])
    ]
    getattr(model, "close", lambda: None)()


def test_load_of_a_missing_model_is_a_clear_error(backend, tmp_path):
    with pytest.raises(ValueError, match="No caikit model at"):
        backend.load(str(tmp_path / "missing"))


def test_stop_then_start_again(backend):
    backend.stop()
    assert not backend.is_started
    backend.start()
    assert backend.train(TextClassifier, epochs=2).run("fine").label
