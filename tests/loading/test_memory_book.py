"""The scheduler's memory book on its own: which worker a model goes to, and what it evicts.

``scheduler.booking`` runs on the scheduler's event loop; here it is given a scheduler
stand-in holding only what it reads (workers' memory_limit, status, resources, and
task metadata), so each rule is checked in isolation. The real scheduler is used in
``test_memory``.
"""

import time
import types

import dask
import pytest

from caikit_dask.loading.scheduler import booking
from caikit_dask.loading.scheduler.books import MEMORY

MB = 1_000_000


class Scheduler:
    """The parts of a distributed Scheduler that the bookkeeping reads."""

    def __init__(self, **workers):
        self.task_metadata = {}
        self.workers = {
            name: types.SimpleNamespace(
                memory_limit=limit, resources={}, status=types.SimpleNamespace(name=status)
            )
            for name, (limit, status) in workers.items()
        }
        self.events = []

    def log_event(self, topic, message):
        self.events.append((topic, message))


@pytest.fixture(autouse=True)
def _no_pause_threshold():
    """Most rules here read plainly as fractions of ``memory_limit``: no pause threshold."""
    off = {"distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False}
    with dask.config.set(off):
        yield


def need(model, size, evict=False, stamps=None):
    return {"model": model, "bytes": size, "fraction": 0.5, "evict": evict, "stamps": stamps}


def load(scheduler, model, size, evict=False, keys=("k",), measured=None):
    keys = [f"{model}-{key}" for key in keys]
    outcome = booking.reserve(keys, {}, [], [], need(model, size, evict), dask_scheduler=scheduler)
    for worker, key in outcome.get("placed", []):
        booking.loaded([[worker, key, measured]], dask_scheduler=scheduler)
    return outcome


def test_a_model_goes_only_where_it_fits_and_replicas_spread():
    scheduler = Scheduler(a=(400 * MB, "running"), b=(400 * MB, "running"))
    outcome = load(scheduler, "m1", 150 * MB, keys=("r1", "r2"))
    assert sorted(w for w, _ in outcome["placed"]) == ["a", "b"]
    assert load(scheduler, "m2", 50 * MB)["placed"]  # 150 + 50 <= 200 on one of them
    failed = load(scheduler, "m3", 60 * MB)
    assert "placed" not in failed
    assert failed["bytes"] == 60 * MB
    assert sorted(failed["free"].values()) == [0, 50 * MB]


def test_a_paused_worker_is_never_chosen():
    scheduler = Scheduler(a=(400 * MB, "paused"), b=(400 * MB, "running"))
    assert [w for w, _ in load(scheduler, "m1", 10 * MB)["placed"]] == ["b"]
    scheduler.workers["b"].status.name = "paused"
    failed = load(scheduler, "m2", 10 * MB)
    assert sorted(failed["paused"]) == ["a", "b"]


def test_a_worker_without_memory_limit_takes_any_model():
    scheduler = Scheduler(a=(0, "running"))
    assert load(scheduler, "huge", 10**12)["placed"]


def test_the_measured_size_replaces_the_estimate_for_the_next_load():
    scheduler = Scheduler(a=(400 * MB, "running"))
    load(scheduler, "m", 1 * MB, keys=("first",), measured=150 * MB)
    assert load(scheduler, "m", 1 * MB, keys=("second",))["bytes"] == 150 * MB
    assert "placed" not in load(scheduler, "m", 1 * MB, keys=("third",))


def test_a_measurement_below_the_size_on_disk_books_the_size_on_disk():
    """Memory freed by evicted models while another loads hides that load's growth."""
    scheduler = Scheduler(a=(400 * MB, "running"))
    load(scheduler, "m", 80 * MB, keys=("first",), measured=3 * MB)
    assert scheduler.task_metadata[MEMORY]["a"]["m-first"]["bytes"] == 80 * MB
    assert load(scheduler, "m", 80 * MB, keys=("second",))["bytes"] == 80 * MB


def test_lru_evicts_the_least_recently_used_loaded_models_of_other_paths():
    scheduler = Scheduler(a=(400 * MB, "running"))
    for model in ("old", "older", "recent"):
        load(scheduler, model, 60 * MB, evict=True)
    scheduler.task_metadata[MEMORY]["a"]["older-k"]["used"] = 1.0  # loaded long ago
    booking.touch({"recent-k": 10**10}, dask_scheduler=scheduler)  # called last
    outcome = load(scheduler, "new", 100 * MB, evict=True)
    assert outcome["evicted"] == [["a", "older-k"], ["a", "old-k"]]
    assert scheduler.events == [("caikit-dask-evictions", {"evicted": outcome["evicted"]})]
    assert set(scheduler.task_metadata[MEMORY]["a"]) == {"recent-k", "new-k"}


def test_lru_never_evicts_the_same_model_a_loading_one_or_a_kept_one():
    scheduler = Scheduler(a=(400 * MB, "running"))
    load(scheduler, "same", 100 * MB, evict=True, keys=("r1",))
    booking.reserve(
        ["loading-k"], {}, [], [], need("loading", 50 * MB, True), dask_scheduler=scheduler
    )
    load(scheduler, "kept", 50 * MB, evict=True)
    booking.keep(["kept-k"], dask_scheduler=scheduler)
    failed = load(scheduler, "same", 100 * MB, evict=True, keys=("r2",))
    assert "placed" not in failed and scheduler.events == []


def test_without_eviction_nothing_is_evicted():
    scheduler = Scheduler(a=(400 * MB, "running"))
    load(scheduler, "evictable", 150 * MB, evict=True)
    assert "placed" not in load(scheduler, "strict", 100 * MB)
    assert scheduler.events == []


def test_release_frees_the_memory():
    scheduler = Scheduler(a=(400 * MB, "running"))
    [[worker, key]] = load(scheduler, "m", 200 * MB)["placed"]
    booking.release([[worker, key]], dask_scheduler=scheduler)
    assert load(scheduler, "n", 200 * MB)["placed"]


def _measured(scheduler, name, process, seen=None):
    """The worker's last heartbeat: its process memory, at ``seen`` (default: now)."""
    worker = scheduler.workers[name]
    worker.memory = types.SimpleNamespace(process=process)
    worker.last_seen = time.time() if seen is None else seen


def test_room_counts_what_the_worker_process_really_holds():
    scheduler = Scheduler(a=(1000 * MB, "running"))
    _measured(scheduler, "a", 300 * MB)  # its own memory, before any model
    # 0.5 x 1000 MB less the 300 MB the process holds: a 250 MB model does not fit
    assert "placed" not in load(scheduler, "big", 250 * MB)
    assert load(scheduler, "m1", 150 * MB, measured=150 * MB)["placed"]
    # Loaded since the last heartbeat: counted as booked, on top of the 300 MB measured
    assert "placed" not in load(scheduler, "m2", 100 * MB)
    # A heartbeat measures the model, and what it allocated after loading (+100 MB)
    _measured(scheduler, "a", 550 * MB, seen=time.time() + 2)
    assert "placed" not in load(scheduler, "m3", 1 * MB)


def test_the_default_ceiling_is_a_fraction_of_the_pause_threshold():
    with dask.config.set({"distributed.worker.memory.pause": 0.8}):
        scheduler = Scheduler(a=(1000 * MB, "running"))
        _measured(scheduler, "a", 0)
        assert "placed" not in load(scheduler, "m1", 401 * MB)  # 0.5 x 0.8 x 1000 MB
        assert load(scheduler, "m1", 400 * MB)["placed"]


def test_a_worker_grown_past_its_ceiling_evicts_lru_models_or_is_reported():
    scheduler = Scheduler(a=(1000 * MB, "running"), b=(1000 * MB, "running"))
    load(scheduler, "old", 100 * MB, evict=True, measured=100 * MB)
    load(scheduler, "new", 100 * MB, evict=True, measured=100 * MB, keys=("k",))
    later = time.time() + 5
    for name in scheduler.workers:
        _measured(scheduler, name, 600 * MB, seen=later)  # grew past 500 MB
    outcome = booking.relieve(dask_scheduler=scheduler)
    assert [key for _, key in outcome["evicted"]]  # the least recently used go first
    assert outcome["over"] == {}  # relieved, not reported
    assert scheduler.events[-1][0] == "caikit-dask-evictions"
    # Without evictable models the worker is only reported.
    scheduler = Scheduler(a=(1000 * MB, "running"))
    load(scheduler, "kept", 100 * MB, measured=100 * MB)
    _measured(scheduler, "a", 600 * MB, seen=later)
    outcome = booking.relieve(dask_scheduler=scheduler)
    assert outcome == {"evicted": [], "over": {"a": [600 * MB, 500 * MB]}}
