"""Benchmark 4: how fast ``train()`` returns and how soon ``wait()`` sees the end.

The task stamps its end with ``time.time()`` on the worker (``trained_at``);
the gap to ``wait()`` returning is what the caller waits beyond the work.
"""

from __future__ import annotations

import time

from .session import Benchmark
from .stats import percentile


class TrainingBenchmark(Benchmark):
    sections = ("training",)

    def training(self) -> dict:
        from caikit_dask import DaskModelTrainer

        from .modules import BenchEcho

        trainer = DaskModelTrainer({"connection": {"address": self.session.address}}, "bench")
        for _ in range(2):  # first calls: import check on workers, event subscriptions
            trainer.train(BenchEcho, sleep=0.0).wait(60)
        submit_ms, after_end_ms, wait_was_late = [], [], 0
        for _ in range(self.plan.trainings):
            started = time.perf_counter()
            future = trainer.train(BenchEcho, sleep=self.plan.train_sleep)
            submit_ms.append((time.perf_counter() - started) * 1e3)
            wait_called = time.time()
            future.wait(60)
            returned = time.time()
            ended = future.load().trained_at
            if ended < wait_called:  # wait() did not block: the sample says nothing
                wait_was_late += 1
                continue
            after_end_ms.append((returned - ended) * 1e3)
        return {
            "train_sleep_s": self.plan.train_sleep,
            "train_returns": _summary_ms(submit_ms),
            "wait_after_end": _summary_ms(after_end_ms),
            "discarded_wait_not_blocking": wait_was_late,
        }


def _summary_ms(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "max_ms": max(values) if values else float("nan"),
    }
