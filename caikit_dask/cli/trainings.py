"""``caikit-dask trainings list | logs ID [--follow] | delete ID [--delete-results]``.

Through ``DaskModelTrainer``'s own management calls (``list_trainings``, a future's
``logs``, ``delete_training``), so what is shown and deleted is exactly what a runtime
sees, for trainings submitted by any process.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from ..trainer import DaskModelTrainer
from .connect import connected, connection_mapping, option
from .tables import table


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("trainings", help="list, read the logs of, delete trainings")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="every training, with status")
    listing.set_defaults(run=run_list)
    logs = actions.add_parser("logs", parents=[common], help="a training's kept log lines")
    logs.add_argument("training_id", metavar="ID")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.set_defaults(run=run_logs)
    delete = actions.add_parser("delete", parents=[common], help="cancel and forget a training")
    delete.add_argument("training_id", metavar="ID")
    delete.add_argument("--delete-results", action="store_true", help="also remove its saved model")
    delete.set_defaults(run=run_delete)


def _trainer(args: argparse.Namespace) -> DaskModelTrainer:
    return DaskModelTrainer({"connection": connection_mapping(args)}, "caikit-dask-cli")


def _time(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value else None


def describe(future: Any) -> dict[str, Any]:
    info = future.get_info()
    return {
        "id": future.id,
        "status": info.status.name,
        "submitted": _time(info.submission_time),
        "completed": _time(info.completion_time),
        "save_path": future.save_path,
        "errors": [str(err) for err in info.errors or ()],
    }


def run_list(args: argparse.Namespace) -> int:
    with connected(args):
        trainings = [describe(future) for future in _trainer(args).list_trainings()]
    if option(args, "json"):
        print(json.dumps(trainings, indent=2))
        return 0
    rows = [
        [t["id"], t["status"], t["submitted"], t["completed"] or "", t["save_path"] or ""]
        for t in trainings
    ]
    print(
        table(["ID", "STATUS", "SUBMITTED", "COMPLETED", "SAVE PATH"], rows)
        if rows
        else "no trainings"
    )
    return 0


def run_logs(args: argparse.Namespace) -> int:
    with connected(args):
        future = _trainer(args).get_model_future(args.training_id)
        lines = future.logs(follow=args.follow)
        for line in lines:
            print(json.dumps(line) if option(args, "json") else line, flush=True)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with connected(args):
        _trainer(args).delete_training(args.training_id, delete_results=args.delete_results)
    if option(args, "json"):
        print(json.dumps({"deleted": args.training_id}))
    else:
        print(f"deleted training {args.training_id}")
    return 0
