"""The Dask actor that holds one loaded model on a worker.

Actor methods are ``async`` so they run on the worker's event loop and hand the
model's work to a thread pool: synchronous actor methods would all share one
thread, and CPU work on the event loop would block the worker's heartbeats.
Output streams stay on the worker and are pulled in chunks by the proxy.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import itertools
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..local_backend import LocalSharedBackend

_END = object()


def _load_model(source: str | bytes, library: str | None) -> Any:
    """Load from a path the worker sees, or from a zipped model sent by the caller."""
    if library:
        try:
            importlib.import_module(library)
        except ImportError as err:
            raise ImportError(
                f"The module's library {library!r} is not importable on this worker ({err}). "
                "Install it in the workers' environment or ship it with "
                "client.upload_file(path, load=False)."
            ) from err
    backend = LocalSharedBackend()
    if isinstance(source, (bytes, bytearray)):
        with tempfile.TemporaryDirectory(prefix="caikit-dask-model-") as tmp:
            zipfile.ZipFile(io.BytesIO(source)).extractall(tmp)
            model = backend.load(_model_root(tmp))
    else:
        model = backend.load(source)
    if model is None:
        raise ImportError(f"No caikit module registered on this worker can load {source!r}")
    return model


def _model_root(directory: str) -> str:
    """The directory holding config.yml inside an extracted archive."""
    for root, _, files in os.walk(directory):
        if "config.yml" in files:
            return root
    return directory


class ModelActor:
    """Owns the model; every proxy call lands in ``call`` or the stream methods."""

    def __init__(self, source: str | bytes, library: str | None = None, max_concurrency: int = 4):
        self.model = _load_model(source, library)
        self.module_id = self.model.MODULE_ID
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="caikit-dask-model"
        )
        self._streams: dict[int, Any] = {}
        self._stream_ids = itertools.count()
        self.calls = 0

    async def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        """Run one task method in the executor and return its result."""
        self.calls += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: getattr(self.model, method)(*args, **kwargs)
        )

    async def open_stream(self, method: str, args: tuple, kwargs: dict, first: int) -> tuple:
        """Start an output stream; returns its id and its first chunk."""
        self.calls += 1
        loop = asyncio.get_running_loop()
        stream = await loop.run_in_executor(
            self._executor, lambda: iter(getattr(self.model, method)(*args, **kwargs))
        )
        stream_id = next(self._stream_ids)
        self._streams[stream_id] = stream
        items, done = await self.next_chunk(stream_id, first)
        return stream_id, items, done

    async def next_chunk(self, stream_id: int, size: int) -> tuple[list, bool]:
        """Up to ``size`` more items of a stream, and whether it has ended."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return [], True
        loop = asyncio.get_running_loop()

        def pull() -> tuple[list, bool]:
            items = []
            for _ in range(size):
                item = next(stream, _END)
                if item is _END:
                    return items, True
                items.append(item)
            return items, False

        try:
            items, done = await loop.run_in_executor(self._executor, pull)
        except BaseException:
            self._streams.pop(stream_id, None)
            raise
        if done:
            self._streams.pop(stream_id, None)
        return items, done

    async def close_stream(self, stream_id: int) -> None:
        """Drop a stream the caller stopped reading."""
        stream = self._streams.pop(stream_id, None)
        close = getattr(stream, "close", None)
        if close is not None:
            close()

    async def ping(self) -> dict:
        """Health check: cheap, answered on the event loop."""
        return {"module_id": self.module_id, "calls": self.calls, "pid": os.getpid()}

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
