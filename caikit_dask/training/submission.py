"""Checks made at the ``train`` call, before anything reaches a worker.

Bad input must fail where the user made the call, naming the problem: an
argument that cannot be pickled, or a module class the workers cannot import.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import cloudpickle
from distributed import Client

from ..errors import error

_importable_on: dict[tuple[str, str], frozenset[str]] = {}
_importable_lock = threading.Lock()


def pickle_arguments(args: tuple, kwargs: dict) -> tuple[list[bytes], dict[str, bytes]]:
    """Pickle each argument once, here, so a failure names the argument."""

    def dump(name: str, value: Any) -> bytes:
        try:
            return cloudpickle.dumps(value)
        except Exception as err:  # noqa: BLE001 - any pickling failure means the same
            error(
                "<DSK30000001E>",
                TypeError(
                    f"Training argument {name} ({type(value).__name__}) cannot be sent to a "
                    f"Dask worker: {type(err).__name__}: {err}. Pass data the worker can "
                    "unpickle (plain values, lists, caikit data model objects, DataStream "
                    "over a list or file) instead."
                ),
            )

    pickled_args = [dump(f"#{index}", value) for index, value in enumerate(args)]
    pickled_kwargs = {name: dump(repr(name), value) for name, value in kwargs.items()}
    return pickled_args, pickled_kwargs


def _import_check(module_name: str, qualname: str) -> str | None:
    import importlib

    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception as err:  # noqa: BLE001 - report whatever the import raised
        return f"{type(err).__name__}: {err}"
    return None


def check_importable_on_workers(client: Client, module_class: type) -> None:
    """Fail at the call if a worker cannot import the module class (cached per worker set)."""
    module_name, qualname = module_class.__module__, module_class.__qualname__
    if module_name == "__main__" or "<locals>" in qualname:
        _check_by_value(module_class)
        return
    workers = frozenset(client.scheduler_info(n_workers=-1)["workers"])
    with _importable_lock:
        if _importable_on.get((module_name, qualname), frozenset()) >= workers:
            return
    results = client.run(_import_check, module_name, qualname, workers=list(workers))
    failures = {address: problem for address, problem in results.items() if problem}
    if failures:
        address, problem = next(iter(failures.items()))
        error(
            "<DSK30000002E>",
            ImportError(
                f"Module class {module_name}.{qualname} is not importable on "
                f"{len(failures)} Dask worker(s), e.g. {address}: {problem}. Install the "
                "library that defines it in the workers' environment, or ship it with "
                "client.upload_file()."
            ),
        )
    with _importable_lock:
        _importable_on[(module_name, qualname)] = workers


def _check_by_value(module_class: type) -> None:
    """Classes from a notebook cell travel by value; say why when that cannot work."""
    try:
        cloudpickle.loads(cloudpickle.dumps(module_class))
    except (TypeError, pickle.PicklingError) as err:
        error(
            "<DSK30000003E>",
            TypeError(
                f"Module class {module_class.__qualname__} is defined in {module_class.__module__}"
                f" (e.g. a notebook cell) and cannot be sent to Dask workers by value: {err}. "
                "Put the module in an importable .py file and make it available on the "
                "workers, e.g. client.upload_file('my_module.py')."
            ),
        )
