"""The embedded cluster one run measures against, and what every benchmark gets from it.

One ``LocalCluster`` (2 worker processes x 1 thread, ``127.0.0.1``, no
dashboard) with two clients, ``direct_to_workers`` on and off, for the raw
actor baselines; models load through the real ``DaskModelInitializer``.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from pathlib import Path
from typing import Any

from dask.utils import format_time

from .environment import log
from .plan import Plan


class BenchSession:
    """Owns the cluster and its clients for one run; benchmarks borrow them."""

    def __init__(self, workdir: str):
        self.workdir = Path(workdir)
        self.cluster: Any = None
        self.address = ""
        self.clients: dict[bool, Any] = {}
        self._actor_futures: list[Any] = []

    def start_cluster(self) -> None:
        from distributed import Client, LocalCluster

        started = time.perf_counter()
        self.cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        self.address = self.cluster.scheduler_address
        for direct in (True, False):
            self.clients[direct] = Client(
                self.address, direct_to_workers=direct, set_as_default=False
            )
        # Workers must have the modules registered before a model can load there.
        client = self.clients[True]
        for name in ("benchmarks.modules", "caikit_dask.example"):
            client.run(importlib.import_module, name)
        log(f"cluster {self.address} up in {format_time(time.perf_counter() - started)}")

    def raw_actor(self, direct: bool, worker: str) -> Any:
        """A plain Dask actor on ``worker``, its handle bound to the given client."""
        from .baselines import RawEcho

        client = self.clients[direct]
        future = client.submit(
            RawEcho, actor=True, workers=[worker], allow_other_workers=False, pure=False
        )
        with client.as_current():
            actor = future.result(timeout=60)
        self._actor_futures.append(future)
        return actor

    def load(self, path: str, replicas: int, direct_calls: str = "auto") -> Any:
        """The real DaskModelInitializer path, as caikit.load / caikit.runtime use it."""
        from caikit.core.modules import ModuleConfig

        from caikit_dask import DaskModelInitializer

        initializer = DaskModelInitializer(
            {
                "connection": {"address": self.address},
                "replicas": replicas,
                "direct_calls": direct_calls,
            },
            "bench",
        )
        return initializer.init(ModuleConfig.load(path))

    def close(self) -> None:
        from caikit_dask.connection import DaskConnection

        with contextlib.suppress(Exception):
            DaskConnection.close_all()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=30)


class Benchmark:
    """One benchmark, or a family of them sharing setup, measured against a session.

    ``prepare`` runs before the cluster starts (save models, calibrate on a
    quiet machine); each name in ``sections`` is a method returning that
    section's results; ``close`` runs after the last of them.
    """

    sections: tuple[str, ...] = ()

    def __init__(self, session: BenchSession, plan: Plan):
        self.session = session
        self.plan = plan

    def prepare(self) -> None:
        """Nothing to prepare unless a benchmark says so."""

    def measure(self, section: str) -> dict:
        return getattr(self, section)()

    def close(self) -> None:
        """Nothing to release unless a benchmark says so."""
