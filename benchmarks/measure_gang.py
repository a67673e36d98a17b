"""Benchmark: one DDP training (gloo on the CPU) as 1, 2 and 3 ranks (``world_size``).

Per world size: the time of a training step (rank 0's clock, after a warm-up step),
and how long the training took to start: from ``train()`` to every rank running (the
RUNNING status), against the same for 1 rank, which is one plain training task. The
world sizes are interleaved, repeat after repeat, on a LocalCluster of its own with
3 worker processes x 1 thread (the session's has 2). Needs torch; without it the
section says so and measures nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics

from .session import Benchmark

WORLD_SIZES = (1, 2, 3)


class GangBenchmark(Benchmark):
    sections = ("gang",)

    def gang(self) -> dict:
        if importlib.util.find_spec("torch") is None:
            return {"skipped": "torch is not installed (the caikit-nlp venv, .venv-nlp, has it)"}
        import dask
        from distributed import LocalCluster

        from caikit_dask import DaskModelTrainer
        from caikit_dask.connection import DaskConnection

        from .ddp_module import BenchDdp

        cluster = LocalCluster(
            n_workers=3,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        try:
            trainer = DaskModelTrainer(
                {"connection": {"address": cluster.scheduler_address}}, "gang"
            )
            samples: dict[int, dict[str, list[float]]] = {
                size: {"start_s": [], "step_s": []} for size in WORLD_SIZES
            }
            for repeat in range(self.plan.gang_warmups + self.plan.gang_repeats):
                for size in WORLD_SIZES:
                    with dask.annotate(world_size=size):
                        future = trainer.train(BenchDdp, steps=self.plan.gang_steps)
                    future.wait(300)
                    info = future.get_info()
                    if info.status.name != "COMPLETED":
                        raise RuntimeError(f"{size} rank(s): {info.status.name} {info.errors}")
                    if repeat < self.plan.gang_warmups:
                        continue
                    training = future.training
                    samples[size]["start_s"].append(training.start_time - training.submission_time)
                    samples[size]["step_s"].append(future.load().report["step_s"])
        finally:
            DaskConnection.close_all()
            with contextlib.suppress(Exception):  # a slow close must not lose the numbers
                cluster.close(timeout=30)
        ranks = {
            str(size): {key: statistics.median(values) for key, values in measured.items()}
            for size, measured in samples.items()
        }
        return {
            "steps": self.plan.gang_steps,
            "repeats": self.plan.gang_repeats,
            "ranks": ranks,
        }
