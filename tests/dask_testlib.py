"""Small caikit modules the tests need beyond the example library.

Importable by the workers too: the fixtures put this directory on their path.
"""

import os
import threading
import time

import caikit.core
from caikit.core import ModuleBase, TaskBase
from caikit.core.data_model import DataStream
from caikit.core.modules import ModuleConfig, ModuleLoader, ModuleSaver

from caikit_dask.example import ClassificationResult, ExampleTextClassificationTask


@caikit.core.module(
    id="4f0d3c0e-6a55-4d3b-9b44-0a8d5d6b1f01",
    name="caikit-dask test fault module",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class FaultModule(ModuleBase):
    """Raises on demand, sleeps on demand, and reports its worker pid."""

    def __init__(self, fail_training: bool = False):
        super().__init__()
        self.calls = 0
        self._lock = threading.Lock()

    @classmethod
    def train(cls, fail_with: str = "", seconds: float = 0.0) -> "FaultModule":
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # a Python loop, as real trainings are
            time.sleep(0.01)
        if fail_with:
            raise ValueError(fail_with)
        return cls()

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"kind": "fault"})

    @classmethod
    def load(cls, model_path, **kwargs) -> "FaultModule":
        config = ModuleLoader(model_path).config
        if config.get("corrupt"):
            raise ValueError(f"corrupt artifacts in {model_path}")
        deadline = time.monotonic() + float(config.get("load_seconds") or 0)
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return cls()

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        if text.startswith("raise:"):
            raise KeyError(text[len("raise:") :])
        if text.startswith("sleep:"):
            time.sleep(float(text[len("sleep:") :]))
        with self._lock:
            self.calls += 1
        return ClassificationResult(label=str(os.getpid()), score=float(self.calls))


class NotABackendModule(TaskBase):
    """Unused marker so the module imports TaskBase meaningfully."""


def save_fault_model(path: str, corrupt: bool = False, load_seconds: float = 0) -> str:
    FaultModule().save(path)
    if corrupt or load_seconds:
        config = ModuleConfig.load(path)
        config["corrupt"] = corrupt
        config["load_seconds"] = load_seconds
        config.save(path)
    return path


def input_stream(*texts: str) -> DataStream:
    return DataStream.from_iterable(list(texts))
