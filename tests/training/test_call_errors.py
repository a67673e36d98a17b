"""Bad input fails at the train call, naming the problem."""

import sys
import textwrap
import threading
import time

import pytest

from caikit_dask import DaskModelTrainer
from caikit_dask.errors import DaskBackendError
from caikit_dask.example import TextClassifier


def test_unpicklable_argument_is_named(connection):
    trainer = DaskModelTrainer({"connection": connection}, "pickle")
    with pytest.raises(TypeError, match="'progress_callback'.*cannot be sent"):
        trainer.train(TextClassifier, epochs=2, progress_callback=threading.Lock())


def test_module_not_importable_on_workers(connection, tmp_path, monkeypatch):
    (tmp_path / "caller_only_lib.py").write_text(
        textwrap.dedent(
            """
            from caikit_dask.example import TextClassifier

            class CallerOnly(TextClassifier):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import caller_only_lib

    trainer = DaskModelTrainer({"connection": connection}, "importable")
    with pytest.raises(ImportError, match="caller_only_lib.CallerOnly is not importable"):
        trainer.train(caller_only_lib.CallerOnly, epochs=2)
    sys.modules.pop("caller_only_lib", None)


def test_unreachable_scheduler_fails_within_timeout():
    trainer = DaskModelTrainer(
        {"connection": {"address": "tcp://127.0.0.1:1", "timeout": "1s"}}, "unreachable"
    )
    started = time.monotonic()
    with pytest.raises(DaskBackendError, match="tcp://127.0.0.1:1"):
        trainer.train(TextClassifier, epochs=2)
    assert time.monotonic() - started < 10


def test_not_a_module_class(connection):
    trainer = DaskModelTrainer({"connection": connection}, "not-module")
    with pytest.raises(TypeError):
        trainer.train(dict)


def test_payload_over_the_limit_is_refused_at_the_call(connection):
    trainer = DaskModelTrainer({"connection": connection, "max_payload_size": "1MiB"}, "payload")
    big = [(f"word{i} " * 50, "positive") for i in range(10_000)]
    with pytest.raises(ValueError, match="max_payload_size=1.00 MiB.*'training_data'"):
        trainer.train(TextClassifier, training_data=big)
