"""Dask submit options for a task: config resources, per-module overrides, dask.annotate.

Only what was explicitly set is forwarded: passing a default (``priority=0``)
would override an enclosing ``dask.annotate``.
"""

from __future__ import annotations

from typing import Any

import dask

from .formatting import whole


def submit_options(
    resources: dict[str, float],
    module_resources: dict[str, dict[str, float]] | None = None,
    module_id: str | None = None,
    retries: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for ``Client.submit``, layered config < module < annotate."""
    annotations = dask.get_annotations()
    merged = dict(resources)
    if module_resources and module_id in module_resources:
        merged.update(module_resources[module_id])
    merged.update(annotations.get("resources") or {})
    options: dict[str, Any] = {}
    merged = {name: amount for name, amount in merged.items() if amount}
    if merged:
        options["resources"] = merged
    if "priority" in annotations:
        options["priority"] = annotations["priority"]
    effective_retries = annotations.get("retries", retries)
    if effective_retries:
        options["retries"] = effective_retries
    return options


def workers_offering(worker_resources: dict[str, dict[str, float]], wanted: dict) -> list[str]:
    """Addresses of the workers whose declared resources cover ``wanted``."""
    return [
        address
        for address, offered in worker_resources.items()
        if all(offered.get(name, 0) >= amount for name, amount in wanted.items())
    ]


def describe_missing(worker_resources: dict[str, dict[str, float]], wanted: dict) -> str:
    """A sentence naming the resources no worker has, for error messages."""
    offered: dict[str, float] = {}
    for resources in worker_resources.values():
        for name, amount in resources.items():
            offered[name] = max(offered.get(name, 0), amount)
    missing = {
        name: amount for name, amount in wanted.items() if offered.get(name, 0) < amount
    } or wanted
    flags = ",".join(f"{name}={whole(amount)}" for name, amount in missing.items())
    return (
        f"no Dask worker offers resources {missing} "
        f"(the {len(worker_resources)} workers offer at most {offered or 'no resources'}). "
        f"Start workers with e.g. `dask worker --resources "
        f"{flags}` or change the requested resources"
    )


def describe_taken(wanted: dict, workers: int) -> str:
    """A sentence for resources that workers offer but other models' replicas hold."""
    return (
        f"every worker offering resources {wanted} has them taken by other models "
        f"({workers} workers); add workers (or make the cluster adaptive), or close a model"
    )
