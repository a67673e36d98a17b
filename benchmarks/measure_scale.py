"""Benchmark 6: many small trainings at once.

Times submitting them all, ``get_info()`` on each (just submitted, then all
done), and reading them again from a new client as a restarted runtime would:
``get_model_future`` per id, and ``list_trainings()`` followed by
``get_model_future`` for each listed id.
"""

from __future__ import annotations

import time
from collections import Counter

from .session import Benchmark


class ScaleBenchmark(Benchmark):
    sections = ("scale",)

    def scale(self) -> dict:
        from caikit_dask import DaskModelTrainer

        from .modules import BenchEcho

        count = self.plan.scale_trainings
        trainer = DaskModelTrainer({"connection": {"address": self.session.address}}, "bench-scale")
        trainer.train(BenchEcho).wait(60)
        started = time.perf_counter()
        futures = [trainer.train(BenchEcho) for _ in range(count)]
        submitted = time.perf_counter() - started
        started = time.perf_counter()
        statuses = [future.get_info().status.name for future in futures]
        read = time.perf_counter() - started
        started = time.perf_counter()
        for future in futures:
            future.wait(300)
        drained = time.perf_counter() - started
        started = time.perf_counter()
        final = [future.get_info().status.name for future in futures]
        read_final = time.perf_counter() - started
        reattach = self._reattach([future.id for future in futures], budget_s=20.0)
        listing = self._list_then_find({future.id for future in futures})
        for future in futures:  # not timed: so closing the cluster loses no published results
            future.training.release()
        return {
            "trainings": count,
            "submit_all_s": submitted,
            "submit_per_train_ms": submitted / count * 1e3,
            "get_info_all_s": read,
            "get_info_per_call_ms": read / count * 1e3,
            "statuses_at_read": _tally(statuses),
            "all_done_after_submit_s": drained,
            "get_info_all_done_s": read_final,
            "final_statuses": _tally(final),
            "reattach": reattach,
            "list": listing,
        }

    def _reattach(self, ids: list[str], budget_s: float) -> dict:
        """Statuses as a restarted runtime reads them: a new client, get_model_future per id."""
        from caikit_dask import DaskModelTrainer

        # A different connection mapping gets its own client (connections are shared by mapping).
        trainer = DaskModelTrainer(
            {"connection": {"address": self.session.address, "timeout": "29s"}}, "bench-reattach"
        )
        trainer.backend.client  # noqa: B018 - connect outside the timing
        read, statuses, started = 0, [], time.perf_counter()
        for training_id in ids:
            statuses.append(trainer.get_model_future(training_id).get_info().status.name)
            read += 1
            if time.perf_counter() - started > budget_s:
                break
        elapsed = time.perf_counter() - started
        return {
            "read": read,
            "of": len(ids),
            "total_s": elapsed,
            "per_call_ms": elapsed / max(read, 1) * 1e3,
            "budget_s": budget_s,
            "statuses": _tally(statuses),
        }

    def _list_then_find(self, ids: set[str]) -> dict:
        """A new client lists every training, then finds each of ours by id."""
        from caikit_dask import DaskModelTrainer

        trainer = DaskModelTrainer(
            {"connection": {"address": self.session.address, "timeout": "28s"}}, "bench-list"
        )
        trainer.backend.client  # noqa: B018 - connect outside the timing
        started = time.perf_counter()
        listed = trainer.list_trainings()
        list_s = time.perf_counter() - started
        started = time.perf_counter()
        statuses = [trainer.get_model_future(i).get_info().status.name for i in sorted(ids)]
        find_s = time.perf_counter() - started
        return {
            "listed": len(listed),
            "ours_listed": len(ids & {future.id for future in listed}),
            "list_s": list_s,
            "get_model_future_all_s": find_s,
            "get_model_future_per_call_ms": find_s / max(len(ids), 1) * 1e3,
            "statuses": _tally(statuses),
        }


def _tally(statuses: list[str]) -> dict[str, int]:
    """How many of each status, by status name."""
    return dict(sorted(Counter(statuses).items()))
