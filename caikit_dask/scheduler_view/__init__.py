"""What an operator sees of the cluster, from the scheduler alone: status, metrics, a page.

Runs on the scheduler, sent by value (distributed, tornado and the standard library; the
scheduler needs no caikit-dask): its books of placed models (``loading.scheduler.books``)
and the trainings it keeps (``training.events``) are enough, so a fresh process that
loaded nothing can show everything.

- ``snapshot``: the one picture (models and their replicas, workers and their booked
  model memory, trainings by status, recent evictions and moves) as plain data: what
  ``caikit-dask status --json`` prints and the page's JSON endpoint serves.
- ``prometheus``: the scheduler's ``/metrics`` gain per-worker and cluster-wide gauges.
- ``dashboard``: the ``/caikit-dask`` page and its JSON on the scheduler's HTTP server.
- ``plugin``: the scheduler plugin that keeps recent evictions and moves and installs the
  other two; ``install`` registers it once per scheduler, from every caikit-dask client.
"""

from __future__ import annotations

import sys

import cloudpickle
from distributed import Client

from ..errors import log
from ..per_client import PerScheduler
from . import dashboard, plugin, prometheus, snapshot

for _module in (dashboard, plugin, prometheus, snapshot):
    cloudpickle.register_pickle_by_value(sys.modules[_module.__name__])


def _register(client: Client) -> bool:
    client.register_plugin(plugin.OperatorView())
    return True


_installed: PerScheduler[bool] = PerScheduler(_register)


def install(client: Client) -> None:
    """Have this client's scheduler serve the status page and metrics (once per scheduler)."""
    try:
        _installed.get(client)
    except Exception as err:  # noqa: BLE001 - the models serve; the view is missing
        log.warning("<DSK10000006W>", "The scheduler will not serve /caikit-dask: %s", err)
