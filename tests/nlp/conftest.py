"""caikit-nlp modules served through DASK: tiny local models, a LocalCluster with worker
processes (``connection`` from tests/conftest.py) and a real ``caikit.runtime`` whose
``runtime.library`` is ``caikit_nlp`` (started with tests/runtime/runtime_server.py).

Every test module here starts with ``pytest.importorskip("caikit_nlp")``: the main venv
(newest caikit, no caikit-nlp) skips them; CI runs them in a venv with the ``nlp`` extra.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Nothing may reach a model hub: set before transformers is imported here or in a worker
# (the session's LocalCluster starts after collection and inherits this environment).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RUNTIME_TESTS = Path(__file__).resolve().parents[1] / "runtime"
if str(RUNTIME_TESTS) not in sys.path:  # runtime_server.py: the real caikit.runtime helpers
    sys.path.insert(0, str(RUNTIME_TESTS))


@pytest.fixture(scope="session")
def tiny_base_models(tmp_path_factory) -> dict[str, Path]:
    """Base models the tests build once: ``sentence-transformer``, ``causal-lm`` and
    ``sequence-classifier``."""
    import tiny_models

    root = tmp_path_factory.mktemp("tiny-base-models")
    return {
        "sentence-transformer": tiny_models.sentence_transformer(root),
        "causal-lm": tiny_models.causal_lm(root),
        "sequence-classifier": tiny_models.sequence_classifier(root),
    }


@pytest.fixture(scope="module")
def nlp_runtime_factory(tmp_path_factory) -> Iterator[Callable[..., object]]:
    """``factory(scheduler_address, models) -> RuntimeServer`` serving caikit_nlp through
    DASK; every runtime it started is stopped when the test module ends."""
    from nlp_support import dask_runtime_config
    from runtime_server import deep_merge, start_runtime

    servers = []

    def factory(scheduler_address: str, models: dict, config: dict | None = None, **kwargs):
        workdir = tmp_path_factory.mktemp("nlp-runtime")
        server = start_runtime(
            workdir,
            config=deep_merge(dask_runtime_config(scheduler_address), config or {}),
            models=models,
            library="caikit_nlp",
            startup_timeout=240,
            **kwargs,
        )
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
