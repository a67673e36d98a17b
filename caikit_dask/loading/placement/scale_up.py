"""Room from an adaptive cluster: a model that fits nowhere asks for another worker.

When no worker has room (resources or memory) for a replica and the cluster is
adaptive, the load asks the scheduler for one more worker (see ``scheduler.adaptive_target``:
Dask's ``Adaptive`` or dask-kubernetes' autoscaler then scales up), waits for it
to join, and books again. It fails, naming why, only when the cluster is at its
adaptive maximum, is not adaptive, or no worker with room joined in time.

The cluster is adaptive when this process holds its ``Adaptive`` (its own
``connection.cluster`` with ``adapt``, or a Jupyter client's cluster; its maximum
is known then) or when something asked the scheduler for an adaptive target in
the last ``ADAPTIVE_SEEN`` seconds (a cluster scaled by another process). The
plugin that notes it starts with the first model a process loads; until the
deployment's first ask after that (Dask's ``Adaptive`` asks every ``interval``),
a load that fits nowhere fails as on a fixed cluster, at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed import Client

from ... import cluster_state
from ...dask_internals import running_adaptive
from ...errors import log
from ...formatting import seconds
from ...per_client import PerScheduler
from ..scheduler import adaptive_target
from ..scheduler.adaptive_target import CountModelsInAdaptiveTarget
from .booking import Booking

TIMEOUT_KEY = "caikit_dask.scale-up-timeout"  # dask config: longest wait for a new worker
DEFAULT_TIMEOUT = "120s"
ADAPTIVE_SEEN = 30.0  # an adaptive target asked this recently: something adapts the cluster


def _plug(client: Client) -> bool:
    client.register_plugin(CountModelsInAdaptiveTarget())
    return True


_plugged: PerScheduler[bool] = PerScheduler(_plug)


def count_models_in_adaptive_target(client: Client) -> None:
    """Have adaptive scaling on this client's cluster count the workers our models fill."""
    try:
        _plugged.get(client)
    except Exception as err:  # noqa: BLE001 - the models serve; scaling just ignores them
        log.warning(
            "<DSK50000026W>", "Adaptive scaling will not count the models it serves: %s", err
        )


def timeout() -> float:
    return parse_timedelta(dask.config.get(TIMEOUT_KEY, DEFAULT_TIMEOUT))


def book_on_new_workers(client: Client, module_id: str, book: Callable[[], Booking]) -> Booking:
    """``book()``; if nothing fits and the cluster is adaptive, ask for workers and retry."""
    booking = book()
    if booking.placed:
        return booking
    adaptive = _own_adaptive(client)
    if adaptive is not None and _at_maximum(client, adaptive):
        return _refused(booking, _at_maximum_reason(adaptive))
    ask_id = f"{module_id}-{uuid.uuid4().hex[:12]}"
    wait = timeout()
    deadline = time.monotonic() + wait
    # Known adaptive (our own Adaptive): ask. Else only if something asked for a target lately.
    seen = None if adaptive is not None else ADAPTIVE_SEEN
    answer = client.run_on_scheduler(adaptive_target.ask, ask_id, wait, seen)
    if not answer["asked"]:
        return booking  # not adaptive: fail as on a fixed cluster, at once
    log.info(
        "<DSK50000027I>",
        "No worker has room for %s (%s): asked the adaptive cluster for a worker more than its %d",
        module_id,
        booking.reason,
        answer["workers"],
    )
    started = time.monotonic()
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                client.wait_for_workers(answer["workers"] + 1, timeout=remaining)
            except TimeoutError:
                break
            booking = book()
            if booking.placed:
                log.info(
                    "<DSK50000028I>",
                    "A new worker has room for %s after %s",
                    module_id,
                    seconds(time.monotonic() - started),
                )
                return booking
            if adaptive is not None and _at_maximum(client, adaptive):
                return _refused(booking, _at_maximum_reason(adaptive, now=True))
            answer = client.run_on_scheduler(
                adaptive_target.ask, ask_id, deadline - time.monotonic(), None
            )
    finally:
        try:
            client.run_on_scheduler(adaptive_target.withdraw, ask_id)
        except Exception as err:  # noqa: BLE001 - the ask expires on its own
            log.debug("Could not withdraw the ask %s: %s", ask_id, err)
    return _refused(
        booking,
        f"asked the adaptive cluster for more workers, but none with room joined within "
        f"{seconds(wait)} (raise dask config {TIMEOUT_KEY} if workers start slowly)",
    )


def _own_adaptive(client: Client) -> Any:
    """The running ``Adaptive`` of the cluster object this process holds, if any."""
    return running_adaptive(getattr(client, "cluster", None))


def _at_maximum(client: Client, adaptive: Any) -> bool:
    maximum = adaptive.maximum
    return maximum is not None and len(cluster_state.workers(client)) >= maximum


def _at_maximum_reason(adaptive: Any, now: bool = False) -> str:
    return (
        f"the cluster is {'now ' if now else ''}at its adaptive maximum of "
        f"{adaptive.maximum} workers (raise the maximum of connection.cluster.adapt, or "
        "close a model)"
    )


def _refused(booking: Booking, why: str) -> Booking:
    return Booking([], f"{booking.reason}; {why}")
