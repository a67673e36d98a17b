"""Start a real ``caikit.runtime`` (gRPC + HTTP) in a subprocess for end-to-end tests.

Fixtures
--------
``caikit_runtime_factory``
    ``factory(config=None, models=None, env=None, library=..., command=None,
    startup_timeout=120) -> RuntimeServer``. ``config`` is a caikit config dict deep-merged
    over a base config (library, local_models_dir, free 127.0.0.1 ports, metrics server and
    model-mesh unix socket off, short shutdown grace). ``models`` maps a model id to a caikit
    module (saved with ``.save``) or to a saved model directory (copied) in local_models_dir.
    Returns once gRPC health answers SERVING and HTTP ``/health`` answers 200 (those enabled);
    every server it started is stopped at teardown. The returned ``RuntimeServer`` has
    ``grpc_target``, ``http_url``, ``channel``, ``grpc_health()``, ``http_health()``,
    ``grpc_services()``, ``grpc_call("pkg.Service/Method", {...}, model_id=...)`` (message
    types via server reflection), ``http_predict(task, model_id, inputs, parameters)``,
    ``logs()``, ``startup_seconds`` and ``stop()``.
``caikit_runtime``
    One server started with ``factory(**request.param)``, so tests parametrise it indirectly::

        @pytest.mark.parametrize(
            "caikit_runtime",
            [{"config": {"model_management": {"initializers": {"default": {"type": "DASK"}}}},
              "library": "caikit_dask", "models": {...}}],
            indirect=True,
        )

    ``library`` must be a top-level package (caikit 0.29 rejects dotted names such as
    ``caikit_dask.example``) whose import registers the modules to serve.

    Without a parameter it serves ``tiny_runtime_lib`` with a ``Greeter`` saved as ``greeter``.

``caikit_runtime_module_factory``
    The same factory, module-scoped: servers live until the test module ends (for e2e
    modules that start an expensive runtime once and run many tests against it).

The server class and ``start_runtime`` live in ``runtime_server.py`` (import them from there;
``from conftest import`` is not possible, several conftest.py files clash).

caikit 0.29 binds gRPC to ``[::]`` and HTTP to ``0.0.0.0`` (neither host is configurable);
clients here only ever connect to 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_server import RuntimeServer, start_runtime


def _runtime_factory(workdir: Path) -> Iterator[Callable[..., RuntimeServer]]:
    servers: list[RuntimeServer] = []

    def factory(**kwargs) -> RuntimeServer:
        server = start_runtime(workdir / f"runtime-{len(servers)}", **kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def caikit_runtime_factory(tmp_path) -> Iterator[Callable[..., RuntimeServer]]:
    """``factory(**kwargs) -> RuntimeServer`` (see :func:`start_runtime`); stops all at end."""
    yield from _runtime_factory(tmp_path)


@pytest.fixture(scope="module")
def caikit_runtime_module_factory(tmp_path_factory) -> Iterator[Callable[..., RuntimeServer]]:
    """Like ``caikit_runtime_factory``, but its servers are stopped when the module ends."""
    yield from _runtime_factory(tmp_path_factory.mktemp("runtimes"))


@pytest.fixture
def caikit_runtime(request, caikit_runtime_factory) -> RuntimeServer:
    """A runtime started with ``request.param`` (factory kwargs) or the tiny library."""
    kwargs = getattr(request, "param", None)
    if kwargs is None:
        from tiny_runtime_lib import Greeter

        kwargs = {"models": {"greeter": Greeter(greeting="Hi")}}
    return caikit_runtime_factory(**kwargs)
