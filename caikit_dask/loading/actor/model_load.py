"""Loading the model inside its actor, and measuring what the load took.

From a path the worker sees, or from the zipped model the caller sent. The growth
of the worker's memory around the load is the model's measured size, booked on the
scheduler instead of its first estimate (see ``placement.memory``).
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
import threading
import zipfile
from typing import Any

import psutil

from ...local_backend import LocalSharedBackend

# Loads on a worker run one at a time, so the RSS growth around a load is its own model's;
# after MEASURE_WAIT a load starts anyway (a hung load must not hold up the others), and
# goes unmeasured (0: the size on disk stays its estimate).
_measuring = threading.Lock()
MEASURE_WAIT = 5.0


def load_model(source: str | bytes | tuple[str, bytes], library: str | None) -> tuple[Any, int]:
    """Load from a path the worker sees, or from a zipped model sent by the caller, or
    from a (path, snapshot) pair: the path while the model is there, else its snapshot.

    Returns the model and the bytes its load added to the worker's memory (the
    module's library is imported first, outside the measurement; 0: not measured).
    """
    if library:
        try:
            importlib.import_module(library)
        except ImportError as err:
            raise ImportError(
                f"The module's library {library!r} is not importable on this worker ({err}). "
                "Install it in the workers' environment or ship it with "
                "client.upload_file(path, load=False)."
            ) from err
    if isinstance(source, tuple):
        path, snapshot = source
        source = path if os.path.isfile(os.path.join(path, "config.yml")) else snapshot
    backend = LocalSharedBackend()
    process = psutil.Process()
    alone = _measuring.acquire(timeout=MEASURE_WAIT)
    try:
        before = process.memory_info().rss
        if isinstance(source, (bytes, bytearray)):
            with tempfile.TemporaryDirectory(prefix="caikit-dask-model-") as tmp:
                zipfile.ZipFile(io.BytesIO(source)).extractall(tmp)
                model = backend.load(_model_root(tmp))
        else:
            model = backend.load(source)
        size = max(0, process.memory_info().rss - before) if alone else 0
    finally:
        if alone:
            _measuring.release()
    if model is None:
        what = repr(source) if isinstance(source, str) else "the zipped model"
        raise ImportError(f"No caikit module registered on this worker can load {what}")
    return model, size


def _model_root(directory: str) -> str:
    """The directory holding config.yml inside an extracted archive."""
    for root, _, files in os.walk(directory):
        if "config.yml" in files:
            return root
    return directory
