"""A training whose worker died: not run again beyond ``retries``, its death told as caikit
tells it.

Dask runs a task again when its worker dies, up to ``distributed.scheduler.allowed-failures``
(3) times: a training that takes its worker down (out of memory) would take down four in
turn, with every model they hold. So each run of a training is recorded on the scheduler
before it starts, and a run beyond ``1 + retries`` refuses to start.

caikit's LOCAL trainer reports a training process that exited with 137 or was killed by
signal 9 (the kernel's OOM killer) as ``MemoryError("Training process died with OOM
error!")``, which caikit.runtime answers as "OOM error during training"; so does this. A
Dask worker's exit status is known only to its nanny, which logs it ("Worker process 123
exited with status 137" / "was killed by signal 9"); it is read from the nanny's log. A
worker without a nanny (``dask worker --no-nanny``) leaves no status: it "died".
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

from ..errors import DaskBackendError
from .events import RUNS_METADATA

OOM_EXIT_CODES = (137, 9, -9)  # caikit's, for a training subprocess (destroyable_process)
OOM_MESSAGE = "Training process died with OOM error!"  # caikit's words, matched by callers
STATUS_WAIT = 3.0  # seconds to wait for the nanny to log the death it is handling


def this_run(worker: Any) -> dict[str, Any]:
    """What identifies this run's worker process, for explaining its death later."""
    return {"worker": worker.address, "pid": os.getpid(), "nanny": worker.nanny}


async def claim_run(scheduler: Any, key: str, run: dict[str, Any], retries: int) -> Any:
    """Record ``run`` of the training's task ``key``; None, or the earlier run whose worker
    died if ``retries`` are used up (the training must not start)."""
    runs = await scheduler.get_metadata(keys=[RUNS_METADATA, key], default=None) or []
    if len(runs) > retries:
        return runs[-1]
    await scheduler.set_metadata(keys=[RUNS_METADATA, key], value=[*runs, run])
    return None


async def death_error(rpc: Any, training_id: str, run: dict[str, Any]) -> Exception:
    """The error a training ends with when ``run``'s worker died under it."""
    status = await exit_status(rpc, run) if run.get("nanny") else None
    where = f"Dask worker {run['worker']} (pid {run['pid']})"
    if status in OOM_EXIT_CODES:
        return MemoryError(
            f"{OOM_MESSAGE} {where} {_how(status)} while running training {training_id}; "
            "give the training more memory (resources: {MEMORY: ...}) or set retries to "
            "run it again."
        )
    how = "died" if status is None else _how(status)
    return DaskBackendError(
        f"Training {training_id} failed: {where} {how} while running it "
        "(set retries to allow reruns)."
    )


async def exit_status(rpc: Any, run: dict[str, Any], wait: float = STATUS_WAIT) -> int | None:
    """The exit code of ``run``'s worker process as its nanny logged it (negative: the
    signal that killed it); None if the nanny is gone or says nothing in time."""
    pattern = re.compile(
        rf"Worker process {run['pid']} (?:exited with status (\d+)|was killed by signal (\d+))"
    )
    deadline = time.monotonic() + wait
    while True:
        try:
            lines = await asyncio.wait_for(rpc(run["nanny"]).get_logs(n=500), wait)
        except Exception:  # noqa: BLE001 - the nanny (its host) is gone too
            return None
        for _, line in lines:
            found = pattern.search(line)
            if found:
                status, signal = found.groups()
                return int(status) if status is not None else -int(signal)
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)


def _how(status: int) -> str:
    return f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
