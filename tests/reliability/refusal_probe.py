"""Run as a subprocess by test_tls.py: try refused connections, then a correct one.

A refused ``distributed.Client`` can leave state behind that makes later clients in the
same process stall or deadlock, so the refusals run here, in a process the test kills if
it hangs, never in the pytest process. Input: one JSON document on stdin,
``{"refused": {case: trainer config}, "good": trainer config, "bound": seconds}``.
Output: one JSON line per step on stdout, flushed as each step ends; logs at DEBUG on
stderr (the test searches them for certificate contents).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time

from dask_testlib import FaultModule
from reliability_support import call_within

from caikit_dask import DaskModelTrainer
from caikit_dask.connection import DaskConnection


def io_loops() -> int:
    return sum(thread.name == "IO loop" for thread in threading.enumerate())


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def attempt(name: str, config: dict, bound: float) -> None:
    started = time.monotonic()
    try:
        future = call_within(bound, DaskModelTrainer(config, "probe").train, FaultModule)
        call_within(bound, future.wait, bound)
        outcome = {"raised": None, "status": future.get_info().status.name}
    except BaseException as err:  # noqa: BLE001 - reported to the test
        outcome = {"raised": type(err).__name__, "message": str(err)}
    report(case=name, elapsed=time.monotonic() - started, io_loops=io_loops(), **outcome)
    with contextlib.suppress(Exception):  # an invalid mapping has no connection to close
        DaskConnection.from_config(config["connection"]).close()


def main() -> None:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and not logger.propagate:
            logger.addHandler(logging.StreamHandler(sys.stderr))
    spec = json.load(sys.stdin)
    report(case="start", io_loops=io_loops())
    for name, config in spec["refused"].items():
        attempt(name, config, spec["bound"])
    attempt("good", spec["good"], spec["bound"])


if __name__ == "__main__":
    main()
