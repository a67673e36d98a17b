"""The DDP training the gang benchmark runs with 1, 2 and 3 ranks (needs torch).

A small MLP, trained with DistributedDataParallel over gloo on the CPU: every rank
runs the same number of steps on batches of its own, so a step's time shows what
the all-reduce of the gradients adds as ranks are added. Without the
torch.distributed environment (one rank, trained the plain way) it makes a world
of one itself, so the same code runs in every case. torch is imported inside
``train``: this file imports without it.
"""

# caikit parses signatures from raw annotations (see caikit_dask/example).
# ruff: noqa: UP006, UP007, UP035, UP045

import json
import os
import socket
import time
from typing import Union

from caikit.core import ModuleBase, module
from caikit.core.modules import ModuleConfig, ModuleLoader, ModuleSaver

from .modules import BenchResult, BenchTask

DDP_MODULE_ID = "5b0c3c52-0e4f-4f0e-9d8a-00000bec0004"


@module(id=DDP_MODULE_ID, name="caikit-dask bench DDP", version="0.1.0", task=BenchTask)
class BenchDdp(ModuleBase):
    """``report``: rank, world size and seconds per step measured on rank 0."""

    def __init__(self, report: dict):
        super().__init__()
        self.report = report

    @classmethod
    def train(cls, steps: int = 20, width: int = 256, batch: int = 64) -> "BenchDdp":
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if "RANK" in os.environ:
            dist.init_process_group("gloo")
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            dist.init_process_group(
                "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1
            )
        try:
            rank = dist.get_rank()
            torch.manual_seed(0)
            layers = [
                layer
                for _ in range(3)
                for layer in (torch.nn.Linear(width, width), torch.nn.ReLU())
            ]
            model = DistributedDataParallel(torch.nn.Sequential(*layers, torch.nn.Linear(width, 1)))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            data = torch.Generator().manual_seed(rank)

            def step() -> None:
                inputs = torch.randn(batch, width, generator=data)
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(inputs), inputs.mean(1, keepdim=True))
                loss.backward()
                optimizer.step()

            step()  # warm-up, not timed
            dist.barrier()
            started = time.perf_counter()
            for _ in range(steps):
                step()
            seconds = (time.perf_counter() - started) / steps
            return cls({"rank": rank, "world": dist.get_world_size(), "step_s": seconds})
        finally:
            if "RANK" not in os.environ:
                dist.destroy_process_group()

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"report": json.dumps(self.report)})

    @classmethod
    def load(cls, model_path: Union[str, ModuleConfig], **kwargs) -> "BenchDdp":
        return cls(json.loads(ModuleLoader(model_path).config.report))

    @BenchTask.taskmethod()
    def run(self, text: str) -> BenchResult:
        return BenchResult(text=json.dumps(self.report), value=self.report["world"])
