"""``caikit-dask models``: one line per model placed on the cluster (from any process)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .connect import connected, option
from .status import read_status
from .tables import size, table


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser("models", parents=[common], help="the models placed")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with connected(args) as client:
        models = read_status(client)["models"]
    if option(args, "json"):
        print(json.dumps(models, indent=2, default=str))
        return 0
    rows = [
        [
            m["model"],
            m["module_id"],
            f"{sum(r['state'] == 'loaded' for r in m['replicas'])}/{len(m['replicas'])}",
            size(m["bytes"]),
            ", ".join(sorted({r["worker"] for r in m["replicas"]})),
        ]
        for m in models
    ]
    print(
        table(["MODEL", "MODULE ID", "LOADED", "MEMORY", "WORKERS"], rows, right=[2, 3])
        if rows
        else "no models placed"
    )
    return 0
