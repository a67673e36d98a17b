"""caikit modules the benchmarks load and train.

Each exists to isolate one cost: ``BenchEcho`` does no work, so a call through
the proxy measures only the path to the actor and back; ``BenchSpin`` burns a
fixed amount of CPU per call, so replicas can be compared on real work. They
live here (not in the example library) so the benchmark owns its workloads;
workers import this module by name, so the repo root must be on their path.
"""

# caikit parses signatures from raw annotations (see caikit_dask/example).
# ruff: noqa: UP006, UP007, UP035, UP045

import os
import time
from typing import Union

import numpy as np
from caikit.core import DataObjectBase, ModuleBase, TaskBase, dataobject, module, task
from caikit.core.modules import ModuleConfig, ModuleLoader, ModuleSaver

PACKAGE = "caikit_dask.benchmarks"
ECHO_MODULE_ID = "5b0c3c52-0e4f-4f0e-9d8a-00000bec0001"
SPIN_MODULE_ID = "5b0c3c52-0e4f-4f0e-9d8a-00000bec0002"
MEMORY_MODULE_ID = "5b0c3c52-0e4f-4f0e-9d8a-00000bec0003"


@dataobject(package=PACKAGE)
class BenchResult(DataObjectBase):
    """A small result object, so a call carries a real data-model object back."""

    text: str
    value: int


@task(unary_parameters={"text": str}, unary_output_type=BenchResult)
class BenchTask(TaskBase):
    """The single task of the benchmark modules."""


@module(id=ECHO_MODULE_ID, name="caikit-dask bench echo", version="0.1.0", task=BenchTask)
class BenchEcho(ModuleBase):
    """Returns its input at once; ``train`` records when it ended (worker clock)."""

    def __init__(self, trained_at: float = 0.0):
        super().__init__()
        self.trained_at = trained_at

    @classmethod
    def train(cls, sleep: float = 0.0) -> "BenchEcho":
        """Optionally sleep, then stamp the end time as the very last statement."""
        if sleep:
            time.sleep(sleep)
        return cls(trained_at=time.time())

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"trained_at": self.trained_at})

    @classmethod
    def load(cls, model_path: Union[str, ModuleConfig], **kwargs) -> "BenchEcho":
        return cls(trained_at=float(ModuleLoader(model_path).config.trained_at or 0.0))

    @BenchTask.taskmethod()
    def run(self, text: str) -> BenchResult:
        return BenchResult(text=text, value=len(text))


def spin(rounds: int) -> int:
    """Mixed CPU work: pure-Python arithmetic (holds the GIL) and small numpy ops.

    numpy releases the GIL only inside its kernels, and on arrays this small
    most of the time is interpreter overhead, so threads in one process mostly
    serialise: an honest stand-in for a Python-heavy model.
    """
    acc = 0
    vec = np.arange(64, dtype=np.float64)
    for i in range(rounds):
        for j in range(40):
            acc = (acc * 31 + i * j) % 1_000_003
        vec = np.sqrt(vec * vec + 1.0)
        acc += int(vec[i % 64]) & 7
    return acc


@module(id=SPIN_MODULE_ID, name="caikit-dask bench spin", version="0.1.0", task=BenchTask)
class BenchSpin(ModuleBase):
    """Burns ``rounds`` of :func:`spin` per call (calibrated to ~10 ms by the benchmark)."""

    def __init__(self, rounds: int = 1000):
        super().__init__()
        self.rounds = rounds

    @classmethod
    def train(cls, rounds: int = 1000) -> "BenchSpin":
        return cls(rounds=rounds)

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"rounds": self.rounds})

    @classmethod
    def load(cls, model_path: Union[str, ModuleConfig], **kwargs) -> "BenchSpin":
        return cls(rounds=int(ModuleLoader(model_path).config.rounds))

    @BenchTask.taskmethod()
    def run(self, text: str) -> BenchResult:
        return BenchResult(text=text, value=spin(self.rounds))


@module(id=MEMORY_MODULE_ID, name="caikit-dask bench memory", version="0.1.0", task=BenchTask)
class BenchMemory(ModuleBase):
    """Holds ``megabytes`` of weights, read from a file at load: its size on disk is its
    size in memory, and every page is resident (``b"\\x01"``, not zeros)."""

    WEIGHTS = "weights.bin"

    def __init__(self, weights: bytes = b""):
        super().__init__()
        self.weights = weights

    @classmethod
    def train(cls, megabytes: float = 1.0) -> "BenchMemory":
        return cls(b"\x01" * int(megabytes * 2**20))

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"weights": self.WEIGHTS})
        with open(os.path.join(model_path, self.WEIGHTS), "wb") as weights:
            weights.write(self.weights)

    @classmethod
    def load(cls, model_path: Union[str, ModuleConfig], **kwargs) -> "BenchMemory":
        path = ModuleLoader(model_path).model_path
        with open(os.path.join(path, cls.WEIGHTS), "rb") as weights:
            return cls(weights.read())

    @BenchTask.taskmethod()
    def run(self, text: str) -> BenchResult:
        return BenchResult(text=text, value=len(self.weights))
