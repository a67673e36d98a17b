"""``caikit-dask status``: models with their replicas, workers with their model memory,
trainings by status. One ``run_on_scheduler`` call (``scheduler_view``).

``--json`` prints the scheduler's picture as it is: ``{"models": [{"model", "module_id",
"path", "bytes", "replicas": [{"worker", "key", "state", "bytes", ...}]}], "workers": [...],
"trainings": {"counts": {...}, "list": [...]}, "recent": {...}}``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from distributed import Client

from ..scheduler_view.plugin import status_of
from .connect import connected, option
from .tables import size, table


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(
        "status", parents=[common], help="models, replicas, workers and trainings"
    )
    command.set_defaults(run=run)


def read_status(client: Client) -> dict[str, Any]:
    """The cluster's status, from the scheduler in one call."""
    return client.run_on_scheduler(status_of)


def run(args: argparse.Namespace) -> int:
    with connected(args) as client:
        status = read_status(client)
    if option(args, "json"):
        print(json.dumps(status, indent=2, default=str))
    else:
        print(render(status))
    return 0


def render(status: dict[str, Any]) -> str:
    models = status["models"]
    replicas = sum(len(m["replicas"]) for m in models)
    parts = [
        f"scheduler {status['scheduler']}: {len(models)} model(s), {replicas} replica(s), "
        f"{len(status['workers'])} worker(s)",
        "",
        "MODELS",
    ]
    rows = []
    for model in models:
        for index, replica in enumerate(model["replicas"]):
            first = index == 0
            rows.append(
                [
                    model["model"] if first else "",
                    model["module_id"] if first else "",
                    replica["worker"],
                    replica["state"],
                    size(replica["bytes"]),
                ]
            )
    parts.append(
        table(["MODEL", "MODULE ID", "WORKER", "STATE", "MEMORY"], rows, right=[4])
        if rows
        else "  (no models placed)"
    )
    parts += ["", "WORKERS"]
    parts.append(
        table(
            ["WORKER", "NAME", "STATUS", "MODELS", "BOOKED", "MODEL MEMORY", "FREE"],
            [
                [
                    w["worker"],
                    w["name"],
                    w["status"],
                    w["models"],
                    size(w["booked"]),
                    size(w["model_memory"]),
                    size(w["free"]),
                ]
                for w in status["workers"]
            ],
            right=[3, 4, 5, 6],
        )
    )
    counts = status["trainings"]["counts"]
    parts += ["", "TRAININGS  " + "  ".join(f"{name.lower()} {n}" for name, n in counts.items())]
    recent = status["recent"]
    if recent["evictions"] or recent["moves"]:
        parts.append(
            f"RECENT     {len(recent['evictions'])} eviction(s), {len(recent['moves'])} move(s) "
            "(see the /caikit-dask page)"
        )
    return "\n".join(parts)
