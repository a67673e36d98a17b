"""A module whose ``train`` is a torch.distributed job, run as the ranks of one training:
``init_process_group("gloo")`` from the environment, an all-reduce of the ranks, then a
few DistributedDataParallel steps of a tiny linear model, each rank on its own data. It
reports whether the gradients agreed across ranks after every backward pass (DDP averages
them), and can fail on one rank or hold one rank in Python while the others wait in a
collective. torch is imported inside ``train``: this file imports without it."""

# caikit parses signatures from raw annotations.
# ruff: noqa: UP007, UP045

import json
import logging
import time
from typing import Optional

from caikit.core import ModuleBase, module
from caikit.core.modules import ModuleLoader, ModuleSaver

from caikit_dask.example import EchoResult, EchoTask
from caikit_dask.progress import report_progress

DDP_PROBE_MODULE_ID = "b2a4f1de-7c63-4d0e-8f7e-5e0c6f3a9b12"
log = logging.getLogger("gang.ddp")


@module(id=DDP_PROBE_MODULE_ID, name="gang test DDP probe", version="0.1.0", task=EchoTask)
class DdpProbe(ModuleBase):
    def __init__(self, report: dict):
        super().__init__()
        self.report = report

    @classmethod
    def train(
        cls,
        steps: int = 3,
        fail_rank: Optional[int] = None,
        hold_rank: Optional[int] = None,
        hold_seconds: float = 0.0,
    ) -> "DdpProbe":
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        rank, world = dist.get_rank(), dist.get_world_size()
        total = torch.tensor([float(rank + 1)])
        dist.all_reduce(total)
        report = {"rank": rank, "world": world, "all_reduce": total.item(), "agreed": []}
        log.info("rank %d of %d: all_reduce gave %s", rank, world, total.item())
        torch.manual_seed(0)  # the same initial weights on every rank
        model = torch.nn.Linear(4, 1)
        ddp = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
        data = torch.Generator().manual_seed(1000 + rank)  # each rank its own batches
        started = time.perf_counter()
        for step in range(1, steps + 1):
            if rank == hold_rank:  # in Python, while the others wait in the all-reduce
                deadline = time.monotonic() + hold_seconds
                while time.monotonic() < deadline:
                    time.sleep(0.02)
            if rank == fail_rank:
                raise ValueError(f"rank {rank} failed before step {step}")
            inputs = torch.randn(16, 4, generator=data)
            targets = inputs.sum(dim=1, keepdim=True)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(ddp(inputs), targets)
            loss.backward()  # DDP all-reduces (averages) the gradients here
            gradients = torch.cat([p.grad.flatten() for p in model.parameters()])
            report["agreed"].append(_agree(gradients))
            optimizer.step()
            log.info("rank %d step %d/%d loss=%.4f", rank, step, steps, loss.item())
            report_progress(step=step, total=steps, loss=loss.item())
        report["seconds_per_step"] = (time.perf_counter() - started) / steps
        report["weights_agreed"] = _agree(
            torch.cat([p.detach().flatten() for p in model.parameters()])
        )
        report["weights"] = [p.detach().flatten().tolist() for p in model.parameters()]
        return cls(report)

    def save(self, model_path, **kwargs):
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"report": json.dumps(self.report)})

    @classmethod
    def load(cls, model_path, **kwargs):
        return cls(json.loads(ModuleLoader(model_path).config.report))

    @EchoTask.taskmethod()
    def run(self, text: str) -> EchoResult:
        return EchoResult(text=json.dumps(self.report))


def _agree(values) -> bool:
    """Whether every rank holds the same ``values`` (an all-gather, compared here)."""
    import torch
    import torch.distributed as dist

    gathered = [torch.zeros_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, values)
    return all(torch.allclose(gathered[0], other) for other in gathered[1:])
