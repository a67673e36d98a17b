"""The on-demand load on its own, with a loader that the test finishes by hand."""

import threading
import time

from caikit_dask.loading.replicas.on_demand import OnDemandLoad


class FakeLoader:
    """Counts the loads started; the test ends each with ``finish``."""

    def __init__(self):
        self.started = threading.Semaphore(0)
        self.count = 0

    def __call__(self):
        self.count += 1
        self.started.release()


def waiting_calls(load: OnDemandLoad, changed: threading.Condition, n: int):
    """``n`` threads waiting as calls do: join the load, wait, until it is not needed."""
    outcomes: list = []

    def call():
        attempt = None
        try:
            with changed:
                while load.needed:
                    attempt = load.join(attempt)
                    changed.wait(5)
            outcomes.append("loaded")
        except Exception as err:  # noqa: BLE001 - the test reads it
            outcomes.append(err)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_many_waiting_calls_start_one_load_and_all_see_it_finish():
    changed, loader = threading.Condition(threading.Lock()), FakeLoader()
    load = OnDemandLoad(changed, loader, needed=True)
    threads, outcomes = waiting_calls(load, changed, 8)
    assert loader.started.acquire(timeout=5)
    time.sleep(0.05)  # let the others join the same load (none may start another)
    load.finished(None)
    for thread in threads:
        thread.join(5)
    assert outcomes == ["loaded"] * 8
    assert loader.count == 1 and not load.needed


def test_the_calls_waiting_for_a_failed_load_get_its_failure_and_the_next_retries():
    changed, loader = threading.Condition(threading.Lock()), FakeLoader()
    load = OnDemandLoad(changed, loader, needed=True)
    threads, outcomes = waiting_calls(load, changed, 3)
    assert loader.started.acquire(timeout=5)
    load.finished(ValueError("no room"))
    for thread in threads:
        thread.join(5)
    assert [str(o) for o in outcomes] == ["no room"] * 3
    assert load.needed and loader.count == 1
    threads, outcomes = waiting_calls(load, changed, 1)  # a later call tries again
    assert loader.started.acquire(timeout=5) and loader.count == 2
    load.finished(None)
    threads[0].join(5)
    assert outcomes == ["loaded"]


def test_a_successful_load_forgets_the_evictions():
    changed = threading.Condition(threading.Lock())
    load = OnDemandLoad(changed, FakeLoader(), needed=True)
    load.evictions = 2
    with changed:
        load.join(None)
    load.finished(None)
    assert load.evictions == 0


def test_without_a_loader_nothing_loads_on_demand():
    load = OnDemandLoad(threading.Condition(), None, needed=True)
    assert not load.possible  # an attached model: its calls wait for a repair instead
