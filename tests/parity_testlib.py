"""Modules for the tests that hold DASK to LOCAL's behaviour (issue: a drop-in for LOCAL).

Importable by the workers and by a runtime too (the fixtures put this directory on their
path): exceptions that pickle cannot rebuild, raised by unary and streaming calls; a module
trained on another loaded model; a training that exits its process the way the kernel's
OOM killer does; a module backend that records the request contexts caikit.runtime tells it.
"""

# caikit parses signatures from raw annotations.
# ruff: noqa: UP006, UP007, UP035, UP045

import json
import os
import threading
from typing import Iterable, Optional

import caikit.core
import grpc
from caikit.core import ModuleBase
from caikit.core.data_model.runtime_context import RuntimeServerContextType
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.module_backends import BackendBase, backend_types
from caikit.core.modules import ModuleLoader, ModuleSaver
from caikit.core.registries import module_backend_types

from caikit_dask.example import (
    ClassificationResult,
    ClassificationStreamResult,
    EchoResult,
    EchoTask,
    ExampleTextClassificationTask,
)


class QuotaExceeded(grpc.RpcError):
    """A gRPC error as a client library raises it: it holds a lock, so it never pickles."""

    def __init__(self, details: str):
        super().__init__(details)
        self._lock = threading.RLock()
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return self._details


class TwoPartError(Exception):
    """Pickle rebuilds it by calling ``TwoPartError(message)``, which fails."""

    def __init__(self, part: str, detail: str):
        super().__init__(f"{part}: {detail}")
        self.part = part


class LockedError(Exception):
    """Neither pickles nor rebuilds from its attributes: only a stand-in can cross."""

    def __init__(self, message: str):
        super().__init__(message)
        self.lock = threading.Lock()


def failure(kind: str) -> Exception:
    """The exception a module raises for ``kind`` (see the classes above)."""
    if kind == "core":
        # by keyword, as caikit raises it: then pickle cannot rebuild it (args is empty)
        return CaikitCoreException(
            status_code=CaikitCoreStatusCode.INVALID_ARGUMENT, message="the text is unusable"
        )
    if kind == "grpc":
        return QuotaExceeded("quota of the upstream service used up")
    if kind == "two-part":
        return TwoPartError("tokenizer", "text too long")
    if kind == "locked":
        return LockedError("the model's lock is held")
    raise ValueError(f"unknown failure kind {kind!r}")


@caikit.core.module(
    id="6a4e2f0b-3c1d-4e5f-8a9b-0c1d2e3f4a51",
    name="caikit-dask parity raiser",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class Raiser(ModuleBase):
    """``text`` is ``"<kind>"`` to raise that failure, anything else to answer; the stream
    raises after ``len(text)`` items, or answers them all for an unknown kind."""

    @classmethod
    def train(cls, note: str = "") -> "Raiser":
        return cls()

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path):
            pass

    @classmethod
    def load(cls, model_path, **kwargs) -> "Raiser":
        return cls()

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        if text in ("core", "grpc", "two-part", "locked"):
            raise failure(text)
        return ClassificationResult(label=text, score=1.0, scores=[])

    @ExampleTextClassificationTask.taskmethod(output_streaming=True)
    def run_stream(self, text: str) -> Iterable[ClassificationStreamResult]:
        for index in range(3):
            yield ClassificationStreamResult(
                index=index,
                text=text,
                start=0,
                end=0,
                label=text,
                score=1.0,
                cumulative_label=text,
                cumulative_score=1.0,
            )
        if text in ("core", "grpc", "two-part", "locked"):
            raise failure(text)


@caikit.core.module(
    id="6a4e2f0b-3c1d-4e5f-8a9b-0c1d2e3f4a52",
    name="caikit-dask parity context reader",
    version="0.1.0",
    task=EchoTask,
)
class ContextReader(ModuleBase):
    """Echoes what the request context it received carried."""

    @classmethod
    def train(cls, note: str = "") -> "ContextReader":
        return cls()

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path):
            pass

    @classmethod
    def load(cls, model_path, **kwargs) -> "ContextReader":
        return cls()

    @EchoTask.taskmethod(context_arg="context")
    def run(self, text: str, context: Optional[RuntimeServerContextType] = None) -> EchoResult:
        metadata = dict(context.invocation_metadata()) if context is not None else {}
        return EchoResult(
            text=text,
            has_context=context is not None,
            context_type=type(context).__name__,
            metadata_value=json.dumps(metadata, sort_keys=True),
        )


@caikit.core.module(
    id="6a4e2f0b-3c1d-4e5f-8a9b-0c1d2e3f4a53",
    name="caikit-dask parity block",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class Block(ModuleBase):
    """A trained building block: labels every text with its ``label``."""

    def __init__(self, label: str = "block"):
        super().__init__()
        self.label = label

    @classmethod
    def train(cls, label: str = "block") -> "Block":
        return cls(label)

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"label": self.label})

    @classmethod
    def load(cls, model_path, **kwargs) -> "Block":
        return cls(ModuleLoader(model_path).config.label)

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        return ClassificationResult(label=self.label, score=float(os.getpid()), scores=[])


@caikit.core.module(
    id="6a4e2f0b-3c1d-4e5f-8a9b-0c1d2e3f4a54",
    name="caikit-dask parity composite",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class Composite(ModuleBase):
    """Trained on top of a loaded ``Block`` (as caikit's sample_lib CompositeModule)."""

    def __init__(self, block: "Block", suffix: str = ""):
        super().__init__()
        self.block, self.suffix = block, suffix

    @classmethod
    def train(cls, block: Block, suffix: str = "") -> "Composite":
        # the block is used during training, as a teacher model would be
        seen = block.run("during training").label
        return cls(block, suffix or f"+{seen}")

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.save_module(self.block, "block")
            saver.update_config({"suffix": self.suffix})

    @classmethod
    def load(cls, model_path, **kwargs) -> "Composite":
        loader = ModuleLoader(model_path)
        return cls(loader.load_module("block"), loader.config.suffix)

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        inner = self.block.run(text)
        return ClassificationResult(label=inner.label + self.suffix, score=inner.score, scores=[])


@caikit.core.module(
    id="6a4e2f0b-3c1d-4e5f-8a9b-0c1d2e3f4a55",
    name="caikit-dask parity OOM trainer",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class OomTrainer(ModuleBase):
    """Its training ends its process as the kernel's OOM killer would (caikit's sample_lib
    ``oom_exit``): ``os._exit(137)``, or with another exit code."""

    @classmethod
    def train(cls, exit_code: int = 137) -> "OomTrainer":
        os._exit(exit_code)

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        return ClassificationResult(label="never", score=0.0, scores=[])


class RecordingBackend(BackendBase):
    """A module backend (as caikit-tgis-backend is) that appends each request context
    caikit.runtime tells it of to the file ``config["record_to"]``: one JSON line each."""

    backend_type = "PARITY_RECORDING"

    def __init__(self, config=None):
        super().__init__(config)
        self.contexts = []

    def register_config(self, config) -> None:
        self.config = {**dict(config or {}), **dict(self.config or {})}

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        self._started = False

    def handle_runtime_context(self, model_id, runtime_context) -> None:
        self.contexts.append((model_id, runtime_context))
        record_to = (self.config or {}).get("record_to")
        if record_to:
            with open(record_to, "a") as handle:
                line = {"model_id": model_id, "context": type(runtime_context).__name__}
                handle.write(json.dumps(line) + "\n")


if RecordingBackend.backend_type not in module_backend_types():
    backend_types.register_backend_type(RecordingBackend)
