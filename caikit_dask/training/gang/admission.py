"""Which workers a gang may start on now: a pure function of plain data (sent by value).

The book (``book``) describes each worker as a mapping (``address``, ``host``,
``pid``, declared ``resources``, ``used`` resources, ``busy`` threads,
``nthreads``, ``running``) and asks here. A rank needs a worker *process* of its
own (torch.distributed's environment and default group are per process), so two
workers sharing a process (an in-process LocalCluster) count once.
"""

from __future__ import annotations

from typing import Any


def offers(worker: dict[str, Any], resources: dict[str, float]) -> bool:
    """The worker declares at least ``resources`` (whether or not they are free now)."""
    declared = worker["resources"]
    return all(declared.get(name, 0) >= amount for name, amount in resources.items())


def free_now(worker: dict[str, Any], resources: dict[str, float]) -> bool:
    """Nothing holds the worker's share of ``resources`` and it has a thread free."""
    declared, used = worker["resources"], worker["used"]
    return worker["busy"] < worker["nthreads"] and all(
        declared.get(name, 0) - used.get(name, 0) >= amount for name, amount in resources.items()
    )


def _one_per_process(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple] = set()
    distinct = []
    for worker in workers:
        process = (worker["host"], worker["pid"])
        if process not in seen:
            seen.add(process)
            distinct.append(worker)
    return distinct


def matching(workers: list[dict[str, Any]], resources: dict[str, float]) -> int:
    """How many worker processes could ever run a rank (running, offering ``resources``)."""
    return len(_one_per_process([w for w in workers if w["running"] and offers(w, resources)]))


def choose_workers(
    workers: list[dict[str, Any]], size: int, resources: dict[str, float], held: set[str]
) -> list[str] | None:
    """``size`` workers in distinct processes, not ``held`` by another gang, whose
    ``resources`` and a thread are free now (least busy first); None if there are not
    that many."""
    candidates = [
        worker
        for worker in workers
        if worker["running"]
        and worker["address"] not in held
        and offers(worker, resources)
        and free_now(worker, resources)
    ]
    candidates.sort(key=lambda worker: (worker["busy"], worker["address"]))
    chosen = _one_per_process(candidates)[:size]
    return [worker["address"] for worker in chosen] if len(chosen) == size else None
