"""``caikit-dask``: what the cluster serves and trains, from any machine that reaches it.

One file per command (``status``, ``models``, ``trainings``); ``connect`` turns the common
options into a connection (``--scheduler``, ``DASK_SCHEDULER_ADDRESS`` / dask config
``scheduler-address``, TLS files, or a caikit ``--config`` file's ``connection``);
``tables`` prints for people, ``--json`` for scripts. Nothing needs to be loaded in this
process: the scheduler knows it all (``scheduler_view``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import alog

from . import models, status, trainings
from .connect import CliError, add_connection_options


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common)
    main_parser = argparse.ArgumentParser(
        prog="caikit-dask",
        description="Inspect the models and trainings of a caikit-dask cluster.",
        parents=[common],
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (status, models, trainings):
        module.add_parser(commands, common)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: exit 0 on success, 1 on a refused request, 2 on bad usage."""
    args = parser().parse_args(argv)
    # Failures are reported once, as one line below; caikit's error log would repeat them.
    alog.configure(default_level="off")
    try:
        return args.run(args) or 0
    except CliError as err:
        print(f"caikit-dask: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # piped into head: the reader has what it wanted
        sys.stderr.close()
        return 0
