"""In the caller's process: whether a gang can ever start, asking an adaptive cluster
for the workers it lacks, and failing it after ``resource_timeout`` if they never come.

The ask is the one loads use (``loading.scheduler.adaptive_target``): the scheduler's
adaptive target is raised by the missing count until the ask is withdrawn or
expires. A cluster counts as adaptive as it does for loads (``loading.placement.
scale_up``): this process holds its ``Adaptive``, or something asked the scheduler
for an adaptive target lately.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

from caikit.core.data_model import JobStatus
from distributed import Client

from ...dask_internals import running_adaptive
from ...errors import DaskBackendError, log
from ...formatting import seconds, whole
from ...loading.placement.scale_up import ADAPTIVE_SEEN, count_models_in_adaptive_target
from ...loading.scheduler import adaptive_target
from .book import count_matching


def matching_workers(client: Client, resources: dict[str, float]) -> int:
    """Worker processes that could run one rank (one scheduler call)."""
    return client.run_on_scheduler(count_matching, resources)


def describe_missing(size: int, matching: int, resources: dict[str, float]) -> str:
    """Why a gang cannot start: how many worker processes it needs and how many match."""
    wanted = {name: whole(amount) for name, amount in resources.items()}
    offered = f"offering resources {wanted}" if resources else "(any)"
    return (
        f"it needs {size} worker processes {offered}, one per rank, and {matching} "
        f"{'does' if matching == 1 else 'do'}. Start more workers (each its own process, "
        f"e.g. `dask worker` with --resources), or lower world_size"
    )


def ask_for_workers(client: Client, training_id: str, missing: int, ttl: float) -> str | None:
    """Ask an adaptive cluster for ``missing`` more workers for ``ttl`` seconds; the ask's
    id, or None when the cluster is not adaptive."""
    count_models_in_adaptive_target(client)  # the plugin that makes asks count
    adaptive = running_adaptive(getattr(client, "cluster", None))
    ask_id = f"training-{training_id}-{uuid.uuid4().hex[:8]}"
    seen = None if adaptive is not None else ADAPTIVE_SEEN
    answer = client.run_on_scheduler(adaptive_target.ask, ask_id, ttl, seen, missing)
    if not answer["asked"]:
        return None
    log.info(
        "<DSK30000041I>",
        "Training %s: asked the adaptive cluster for %d workers more than its %d",
        training_id,
        missing,
        answer["workers"],
    )
    return ask_id


def watch_room(training: Any, size: int, resource_timeout: float) -> None:
    """In the background, for a gang that lacks workers: ask an adaptive cluster for the
    missing ones (again each second until asked: a deployment's adaptive loop may not
    have looked yet), withdraw the ask once the training starts or ends, and fail it
    after ``resource_timeout`` if it has not started and fewer than ``size`` match."""

    def watch() -> None:
        deadline = time.monotonic() + resource_timeout
        ask_id = None
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if training.state.done.is_set() or training.start_time is not None:
                    return
                if ask_id is None:
                    missing = size - matching_workers(training.client, training.resources)
                    if missing > 0:
                        ask_id = ask_for_workers(training.client, training.id, missing, remaining)
                training.state.done.wait(min(1.0 if ask_id is None else 0.25, remaining))
            if training.state.done.is_set() or training.start_time is not None:
                return
            matching = matching_workers(training.client, training.resources)
        except Exception as err:  # noqa: BLE001 - the client may be closing
            log.debug("Could not check the room for training %s: %s", training.id, err)
            return
        finally:
            if ask_id is not None:
                with contextlib.suppress(Exception):  # it expires by itself anyway
                    training.client.run_on_scheduler(adaptive_target.withdraw, ask_id)
        if matching >= size:
            return  # they exist, only busy: it waits its turn
        asked = " (asked the adaptive cluster for more, in vain)" if ask_id else ""
        reason = (
            f"Training {training.id} could not start within resource_timeout="
            f"{seconds(resource_timeout)}: {describe_missing(size, matching, training.resources)}"
            f"{asked}."
        )
        log.warning("<DSK30000011W>", reason)
        training.end(JobStatus.ERRORED, DaskBackendError(reason))
        training.stop_everywhere()  # the driver waits in the book: stop it

    threading.Thread(target=watch, name="caikit-dask-gang-room", daemon=True).start()
