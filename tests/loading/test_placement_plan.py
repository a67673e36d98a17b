"""The placement plan as a pure function: which workers, what to evict, or why none."""

from caikit_dask.loading.scheduler.plan import WorkerView, plan_placement

MB = 1_000_000
RUNNING = WorkerView(True, {}, 1000 * MB)


def booking(mb, used, evictable=True, loaded=True, model="other"):
    return {
        "bytes": mb * MB,
        "used": used,
        "evictable": evictable,
        "loaded": loaded,
        "model": model,
    }


def memory(evict=False):
    return {"model": "m", "fraction": 0.5, "evict": evict}


def test_replicas_spread_over_the_least_loaded_workers_and_avoid_what_is_used():
    workers = {"a": RUNNING, "b": RUNNING, "c": RUNNING}
    placements = {"a": {"x": {}}, "b": {}}
    plan = plan_placement(["k1", "k2"], {}, ["c"], [], None, 0, workers, placements, {})
    assert plan.placed == [("b", "k1"), ("a", "k2")]
    assert placements == {"a": {"x": {}}, "b": {}}  # the books given are not changed


def test_a_resource_is_never_shared_and_excluded_workers_never_used():
    workers = {"a": WorkerView(True, {"GPU": 1}, 0), "b": WorkerView(True, {"GPU": 1}, 0)}
    plan = plan_placement(["k1", "k2"], {"GPU": 1}, [], ["b"], None, 0, workers, {}, {})
    assert plan.placed == [("a", "k1")]
    taken = plan_placement(
        ["k"],
        {"GPU": 1},
        [],
        [],
        None,
        0,
        workers,
        {"a": {"g": {"GPU": 1}}, "b": {"h": {"GPU": 1}}},
        {},
    )
    assert taken.placed == [] and taken.report["unbooked"] == {"a": {"GPU": 0}, "b": {"GPU": 0}}


def test_memory_fits_or_the_least_recently_used_models_of_others_are_evicted():
    workers = {"a": RUNNING}
    bookings = {"a": {"old": booking(300, used=1), "new": booking(150, used=2)}}
    full = plan_placement(["k"], {}, [], [], memory(), 200 * MB, workers, {}, bookings)
    assert full.placed == [] and full.report["free"] == {"a": 50 * MB}
    plan = plan_placement(["k"], {}, [], [], memory(evict=True), 200 * MB, workers, {}, bookings)
    assert plan.placed == [("a", "k")] and plan.evicted == [("a", "old")]


def test_a_model_is_never_evicted_for_itself_nor_while_loading():
    workers = {"a": RUNNING}
    bookings = {"a": {"self": booking(400, 1, model="m"), "loading": booking(100, 1, loaded=False)}}
    plan = plan_placement(["k"], {}, [], [], memory(evict=True), 200 * MB, workers, {}, bookings)
    assert plan.placed == [] and plan.evicted == []


def test_a_paused_worker_takes_nothing_and_is_named():
    workers = {"a": WorkerView(False, {}, 1000 * MB), "b": RUNNING}
    assert plan_placement(["k"], {}, [], [], None, 0, workers, {}, {}).placed == [("b", "k")]
    none = plan_placement(["k"], {}, [], ["b"], None, 0, workers, {}, {})
    assert none.report["paused"] == ["a"]
