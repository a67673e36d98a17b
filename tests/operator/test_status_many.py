"""``caikit-dask status`` over 1,000 booked models: every one listed, from one scheduler call.

The books are filled through the scheduler's own booking steps (``reserve``, ``loaded``),
as 1,000 loads would leave them, without loading 1,000 actors. The time it takes is
printed (a target lives with the benchmarks, not in a test).
"""

from __future__ import annotations

import time

import pytest
from distributed import Client, LocalCluster
from operator_support import cli, cli_json

from caikit_dask.cli.status import read_status, render
from caikit_dask.loading.scheduler import booking

pytestmark = pytest.mark.slow
MODELS = 1000


def book_models(count: int, dask_scheduler) -> None:
    for index in range(count):
        key = f"caikit-model-m-{index:04d}"
        memory = {
            "model": f"/models/model-{index:04d}",
            "bytes": 1_000_000,
            "fraction": 0.8,
            "evict": False,
            "stamps": {},
            "name": f"model-{index:04d}",
            "module_id": "module-id",
        }
        placed = booking.reserve([key], {}, [], [], memory, dask_scheduler=dask_scheduler)
        worker, _ = placed["placed"][0]
        booking.loaded([[worker, key, 2_000_000]], dask_scheduler=dask_scheduler)


def test_status_lists_a_thousand_models():
    with (
        LocalCluster(
            n_workers=2,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            memory_limit="64GB",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.run_on_scheduler(book_models, MODELS)
        started = time.perf_counter()
        status = read_status(client)
        table = render(status)
        took = time.perf_counter() - started
        print(f"status of {MODELS} models: {took * 1000:.0f} ms (read + render)")
        assert len(status["models"]) == MODELS
        assert table.count("\nmodel-") == MODELS
        assert sum(w["models"] for w in status["workers"]) == MODELS
        assert all(w["booked"] == MODELS // 2 * 2_000_000 for w in status["workers"])
        printed = cli_json("status", "--scheduler", cluster.scheduler_address)
        assert [m["model"] for m in printed["models"]] == [f"model-{i:04d}" for i in range(MODELS)]
        assert (
            cli("models", "--scheduler", cluster.scheduler_address).stdout.count("\n") == MODELS + 1
        )
