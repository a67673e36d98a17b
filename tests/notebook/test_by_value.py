"""Module classes defined in ``__main__`` (as in a notebook) sent to Dask workers by value.

Each check runs a script as ``__main__`` in a subprocess, so the module class really
lives in ``__main__`` and the LocalCluster's worker processes cannot import it by name.
The same path in a real Jupyter kernel is covered by notebook_defined_module.ipynb.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

PRELUDE = textwrap.dedent(
    """
    from typing import Iterable

    from caikit.core import ModuleBase, module
    from caikit.core.modules import ModuleLoader, ModuleSaver
    from distributed import Client, LocalCluster

    import caikit_dask
    from caikit_dask.example.data_model import ClassificationResult, ClassificationStreamResult
    from caikit_dask.example.tasks import ExampleTextClassificationTask
    from caikit_dask.training.by_value import (
        ByValueError,
        ByValueModuleClass,
        check_by_value,
        ensure_registered_on_workers,
        prepare_module_class,
        resolve_module_class,
    )

    PREFIX = "nb:"


    def helper(label):
        return PREFIX + label


    @module(
        id="0b5f3f5e-8f0a-4bde-9d3e-000000000001",
        name="main module",
        version="0.0.1",
        task=ExampleTextClassificationTask,
    )
    class MainModule(ModuleBase):
        def __init__(self, label="x"):
            super().__init__()
            self.label = label

        @classmethod
        def train(cls, label: str = "pos") -> "MainModule":
            return MainModule(helper(label))

        def save(self, model_path, **kwargs):
            with ModuleSaver(self, model_path=model_path) as saver:
                saver.update_config({"label": self.label})

        @classmethod
        def load(cls, model_path, **kwargs):
            return cls(ModuleLoader(model_path).config.label)

        @ExampleTextClassificationTask.taskmethod()
        def run(self, text: str) -> ClassificationResult:
            return ClassificationResult(label=self.label, score=1.0, scores=[])

        @ExampleTextClassificationTask.taskmethod(output_streaming=True)
        def run_stream(
            self, text: str, unit: str = "sentence", delay_per_item: float = 0.0
        ) -> Iterable[ClassificationStreamResult]:
            for index, word in enumerate(text.split()):
                yield ClassificationStreamResult(
                    index=index, text=word, start=0, end=0, label=self.label, score=1.0,
                    cumulative_label=self.label, cumulative_score=1.0,
                )
    """
)


def _run(body: str, tmp_path) -> str:
    script = tmp_path / "main_script.py"
    script.write_text(PRELUDE + "\n\n" + textwrap.dedent(body))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_main_class_trains_registers_and_loads_on_workers(tmp_path):
    out = _run(
        """
        def train_on_worker(shipped, path):
            from caikit.core.registries import module_registry

            cls = resolve_module_class(shipped)
            model = cls.train("neg")
            model.save(path)
            flavours = sorted(
                (streaming, signature.method_name)
                for flavours in cls._TASK_INFERENCE_SIGNATURES.values()
                for _, streaming, signature in flavours
            )
            return {
                "where": f"{cls.__module__}.{cls.__qualname__}",
                "label": model.label,
                "registered": module_registry().get(cls.MODULE_ID) is cls,
                "flavours": flavours,
            }


        def load_on_worker(path):
            from caikit_dask import LocalSharedBackend

            model = LocalSharedBackend().load(path)
            return model.run("hi").label, [r.text for r in model.run_stream("a b c")]


        if __name__ == "__main__":
            with LocalCluster(
                n_workers=2, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
            ) as cluster, Client(cluster) as client:
                shipped = prepare_module_class(MainModule)
                assert isinstance(shipped, ByValueModuleClass), shipped
                assert resolve_module_class(shipped) is MainModule  # the caller's own class
                assert prepare_module_class(ByValueModuleClass) is ByValueModuleClass
                import os

                model_path = os.path.abspath("model0")
                for attempt in range(2):  # the second use reuses the rebuilt class
                    result = client.submit(
                        train_on_worker, shipped, os.path.abspath(f"model{attempt}"), pure=False
                    ).result()
                    assert result == {
                        "where": "__main__.MainModule",
                        "label": "nb:neg",
                        "registered": True,
                        "flavours": [(False, "run"), (True, "run_stream")],
                    }, result
                assert ensure_registered_on_workers(client, MainModule) is True
                assert ensure_registered_on_workers(client, MainModule) is False
                loaded = client.run(load_on_worker, model_path)
                assert len(loaded) == 2, loaded
                assert all(v == ("nb:neg", ["a", "b", "c"]) for v in loaded.values()), loaded
                cluster.scale(3)  # a worker joining later gets the class from the plugin
                client.wait_for_workers(3)
                loaded = client.run(load_on_worker, model_path)
                assert len(loaded) == 3, loaded
                assert all(v == ("nb:neg", ["a", "b", "c"]) for v in loaded.values()), loaded
                print("OK")
        """,
        tmp_path,
    )
    assert out.strip().endswith("OK")


def test_unsendable_classes_fail_with_the_fix(tmp_path):
    out = _run(
        """
        import threading

        from caikit.core import DataObjectBase, dataobject


        @dataobject(package="test.by_value")
        class Record(DataObjectBase):
            text: str


        @module(
            id="0b5f3f5e-8f0a-4bde-9d3e-000000000002",
            name="uses a main data object",
            version="0.0.1",
            task=ExampleTextClassificationTask,
        )
        class UsesRecord(MainModule):
            @classmethod
            def train(cls, records: Iterable[Record] = None) -> "UsesRecord":
                return cls()


        @module(
            id="0b5f3f5e-8f0a-4bde-9d3e-000000000003",
            name="holds a lock",
            version="0.0.1",
            task=ExampleTextClassificationTask,
        )
        class HoldsLock(MainModule):
            LOCK = threading.Lock()


        class NotAModule:
            pass


        for cls in (UsesRecord, HoldsLock, NotAModule):
            try:
                check_by_value(cls)
            except ByValueError as err:
                print(f"{cls.__name__}: {err}")
            else:
                print(f"{cls.__name__}: no error")
        """,
        tmp_path,
    )
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert "__main__.Record is a caikit data model class (@dataobject)" in lines["UsesRecord"]
    assert "cannot pickle '_thread.lock' object" in lines["HoldsLock"]
    assert "not a @module-decorated caikit module" in lines["NotAModule"]
    for message in lines.values():
        assert "is defined in __main__" in message
        assert "client.upload_file('my_module.py', load=False)" in message


def test_a_class_sent_by_value_is_pickled_once_per_train(tmp_path):
    out = _run(
        """
        import os

        PICKLED = []


        class CountsPickling:
            \"\"\"Counts each pickling of the class holding it (its attributes go too).\"\"\"

            def __reduce__(self):
                PICKLED.append(1)
                return str, ("counted",)


        @module(
            id="0b5f3f5e-8f0a-4bde-9d3e-000000000004",
            name="counts its pickling",
            version="0.0.1",
            task=ExampleTextClassificationTask,
        )
        class Counted(MainModule):
            COUNTER = CountsPickling()

            @classmethod
            def train(cls, label: str = "pos") -> "Counted":
                return cls(helper(label) + "|" + str(cls.COUNTER))


        if __name__ == "__main__":
            with LocalCluster(
                n_workers=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
            ) as cluster:
                trainer = caikit_dask.DaskModelTrainer(
                    {"connection": {"address": cluster.scheduler_address}}, "default"
                )
                for attempt in range(2):
                    before = len(PICKLED)
                    future = trainer.train(
                        Counted, label="neg", save_path=os.path.abspath(f"model{attempt}")
                    )
                    print(f"pickled: {len(PICKLED) - before}")
                    future.wait()
                    assert future.get_info().status.name == "COMPLETED", future.get_info()
                    model = future.load()
                    print(f"trained: {type(model).__module__}.{type(model).__qualname__}")
                    print(f"label: {model.label}")
                trainer.backend.stop()
        """,
        tmp_path,
    )
    lines = out.strip().splitlines()
    assert lines.count("pickled: 1") == 2, out
    assert lines.count("trained: __main__.Counted") == 2, out
    assert lines.count("label: nb:neg|counted") == 2, out  # trained by the class rebuilt there
