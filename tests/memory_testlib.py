"""A caikit module whose model really occupies memory: for placement and eviction tests.

Its weights are a file of ``megabytes`` MB that the load reads into memory (so the
size on disk, the first estimate, is right), or, with ``on_disk=False``, bytes made
at load time (so only the measurement after the load knows them). Every page is
touched (``b"\\x01" * n``): zeros from ``bytearray(n)`` would not be resident.
Importable by the workers: the fixtures put this directory on their path.
"""

import os
import time

import caikit.core
from caikit.core import ModuleBase
from caikit.core.modules import ModuleConfig, ModuleLoader, ModuleSaver

from caikit_dask.example import ClassificationResult, ExampleTextClassificationTask

MB = 1024 * 1024


@caikit.core.module(
    id="7a3e1c52-9d0b-4c1e-8f3a-2b6d5e4c3a10",
    name="caikit-dask test memory module",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class MemoryModule(ModuleBase):
    """Holds ``megabytes`` of resident weights; answers with its worker's pid."""

    def __init__(self, weights: bytes = b""):
        super().__init__()
        self.weights = weights
        self.cache: list[bytes] = []  # grown by "grow:<MB>" calls: memory after the load

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"kind": "memory"})

    @classmethod
    def load(cls, model_path, **kwargs) -> "MemoryModule":
        loader = ModuleLoader(model_path)
        config = loader.config
        if config.get("fail_with"):
            raise ValueError(config["fail_with"])
        time.sleep(float(config.get("load_seconds") or 0))
        weights_file = os.path.join(str(model_path), "weights.bin")
        if os.path.exists(weights_file):
            with open(weights_file, "rb") as weights:
                return cls(weights.read())
        return cls(b"\x01" * int(float(config.get("megabytes") or 0) * MB))

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        if text.startswith("sleep:"):
            time.sleep(float(text[len("sleep:") :]))
        if text.startswith("grow:"):
            self.cache.append(b"\x01" * int(float(text[len("grow:") :]) * MB))
        return ClassificationResult(label=str(os.getpid()), score=float(len(self.weights)))


def save_memory_model(
    path: str,
    megabytes: float,
    on_disk: bool = True,
    fail_with: str = "",
    load_seconds: float = 0,
) -> str:
    """A model taking ``megabytes`` of worker memory once loaded."""
    MemoryModule().save(path)
    config = ModuleConfig.load(path)
    config["megabytes"] = megabytes
    config["fail_with"] = fail_with
    config["load_seconds"] = load_seconds
    config.save(path)
    if on_disk:
        with open(os.path.join(path, "weights.bin"), "wb") as weights:
            weights.write(b"\x01" * int(megabytes * MB))
    return path


def warm_up() -> None:
    """On a worker: import what the first load imports, before its memory is measured."""
    import caikit_dask.loading.actor.model_actor  # noqa: F401


def memory_fraction_for(client, models: float, megabytes: float) -> float:
    """The ``memory_fraction`` that leaves room for ``models`` of ``megabytes`` on each
    worker above its own measured memory (the ceiling is that fraction of Dask's pause
    threshold, for the whole process: see ``scheduler.plan``)."""
    import dask

    client.run(warm_up)
    after = time.time() + 0.5
    deadline = time.monotonic() + 30
    while True:
        workers = client.run_on_scheduler(
            lambda dask_scheduler: [
                (w.memory.process, w.last_seen, w.memory_limit)
                for w in dask_scheduler.workers.values()
            ]
        )
        if all(seen > after for _, seen, _ in workers):
            break
        assert time.monotonic() < deadline, "no heartbeat from the workers"
        time.sleep(0.1)
    own = max(process for process, _, _ in workers)
    limit = min(limit for _, _, limit in workers)
    fraction = (own + models * megabytes * MB) / (
        dask.config.get("distributed.worker.memory.pause") * limit
    )
    assert fraction < 1, "the workers' own memory leaves no room"
    return fraction
