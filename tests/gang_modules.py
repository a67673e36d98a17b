"""Modules for trainings of many ranks that need no torch: each rank reports the
torch.distributed environment it saw, logs and reports progress per step, and can be
told to fail on one rank (once, with a marker directory, to test retries)."""

# caikit parses signatures from raw annotations.
# ruff: noqa: UP007, UP045

import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

from caikit.core import ModuleBase, module
from caikit.core.modules import ModuleLoader, ModuleSaver

from caikit_dask.example import EchoResult, EchoTask
from caikit_dask.progress import report_progress

RANK_PROBE_MODULE_ID = "3f0d3c1e-6b0a-4c55-9a44-1b8e2a9f7d21"
VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
log = logging.getLogger("gang.probe")


def environment() -> dict:
    return {name: os.environ.get(name) for name in VARIABLES}


@module(id=RANK_PROBE_MODULE_ID, name="gang test rank probe", version="0.1.0", task=EchoTask)
class RankProbe(ModuleBase):
    def __init__(self, seen: dict):
        super().__init__()
        self.seen = seen

    @classmethod
    def train(
        cls,
        steps: int = 3,
        step_seconds: float = 0.0,
        fail_rank: Optional[int] = None,
        fail_at_step: int = 1,
        fail_once_in: Optional[str] = None,
    ) -> "RankProbe":
        rank = int(os.environ.get("RANK", "-1"))
        seen = environment() | {"pid": os.getpid(), "started": time.time()}
        log.info("rank %d environment %s", rank, json.dumps(environment(), sort_keys=True))
        for step in range(1, steps + 1):
            if rank == fail_rank and step == fail_at_step and _first_time(fail_once_in, rank):
                raise ValueError(f"rank {rank} gave up at step {step}")
            log.info("rank %d step %d/%d", rank, step, steps)
            report_progress(step=step, total=steps, message=f"rank {rank}")
            deadline = time.monotonic() + step_seconds
            while time.monotonic() < deadline:  # short sleeps: a cancel lands between them
                time.sleep(0.02)
        seen["ended"] = time.time()
        return cls(seen)

    def save(self, model_path, **kwargs):
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"seen": json.dumps(self.seen)})

    @classmethod
    def load(cls, model_path, **kwargs):
        return cls(json.loads(ModuleLoader(model_path).config.seen))

    @EchoTask.taskmethod()
    def run(self, text: str) -> EchoResult:
        return EchoResult(text=json.dumps(self.seen))


def _first_time(directory: Optional[str], rank: int) -> bool:
    """True unless this rank failed before (a marker in ``directory``); always True
    without a directory."""
    if directory is None:
        return True
    marker = Path(directory) / f"failed-rank-{rank}"
    if marker.exists():
        return False
    marker.touch()
    return True
