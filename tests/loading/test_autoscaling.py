"""Replicas that follow the load: growth under load, shrink after idle, and a model
scaled to zero that holds no actor and answers its next call. Short delays keep the
tests quick; the rules are the same at Ray Serve's defaults."""

import itertools
import logging
import threading

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import actor_keys_on_workers, poll, run_in_threads
from dask_testlib import save_fault_model

from caikit_dask import DaskModelInitializer

pytestmark = pytest.mark.slow

_names = itertools.count()


def _initializer(connection, **autoscaling):
    settings = {
        "connection": connection,
        "call_timeout": "30s",
        "health_check_period": "0.5s",
        "autoscaling": {
            "target_ongoing_requests": 1,
            "upscale_delay": "0.5s",
            "downscale_delay": "1s",
            **autoscaling,
        },
    }
    return DaskModelInitializer(settings, f"autoscaling-{next(_names)}")


class _Callers:
    """Threads calling the model in a loop until stopped; they keep their failures."""

    def __init__(self, model, count: int, text: str = "sleep:0.05"):
        self.model, self.text = model, text
        self.stop, self.calls, self.failures = threading.Event(), [0], []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.model.run(self.text)
                self.calls[0] += 1
            except Exception as err:  # noqa: BLE001 - asserted by the test
                self.failures.append(err)

    def join(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def _resident(model) -> int:
    return sum(r["state"] == "resident" for r in model.replicas)


def _decisions(caplog, code: str) -> list[str]:
    """The logged decisions with this code, formatted (caikit's log keeps a dict)."""
    return [
        r.msg["message"] % r.msg["args"]
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("log_code") == code
    ]


def test_grows_under_load_and_shrinks_after_idle_with_no_failed_call(
    connection, observer, tmp_path, caplog
):
    path = save_fault_model(str(tmp_path / "model"))
    model = _initializer(connection, max_replicas=3).init(ModuleConfig.load(path))
    assert _resident(model) == 1
    callers = _Callers(model, 6)
    try:
        with caplog.at_level(logging.INFO):
            poll(lambda: _resident(model) == 3, 60, what="growth to max_replicas=3")
            grown = {r["key"] for r in model.replicas}
            callers.join()
            poll(lambda: _resident(model) == 1, 60, what="shrink to min_replicas=1")
    finally:
        callers.join()
    assert not callers.failures
    assert model.run("hi").label  # the one left answers
    poll(
        lambda: len(actor_keys_on_workers(observer) & grown) == 1,
        30,
        what="the leaving replicas' actors released",
    )
    ups, downs = _decisions(caplog, "<DSK50000022I>"), _decisions(caplog, "<DSK50000023I>")
    assert [m.split(" up to ")[1].split()[0] for m in ups] == ["2", "3"]
    assert [m.split(" down to ")[1].split()[0] for m in downs] == ["2", "1"]
    assert "above target_ongoing_requests=1 for upscale_delay=0.5s (max_replicas=3)" in ups[0]
    model.close()


def test_min_replicas_zero_releases_an_idle_model_and_its_next_call_loads_it(
    connection, observer, tmp_path
):
    path = save_fault_model(str(tmp_path / "model"))
    initializer = DaskModelInitializer(
        {
            "connection": connection,
            "call_timeout": "30s",
            "lazy": True,
            "autoscaling": {"min_replicas": 0, "max_replicas": 2, "downscale_delay": "1s"},
        },
        f"autoscaling-{next(_names)}",
    )
    model = initializer.init(ModuleConfig.load(path))
    before = actor_keys_on_workers(observer)
    assert [r["state"] for r in model.replicas] == ["not loaded (lazy)"]

    assert model.run("hi").label
    [key] = [r["key"] for r in model.replicas]
    assert key in actor_keys_on_workers(observer)
    poll(lambda: key not in actor_keys_on_workers(observer), 30, what="the idle actor released")
    assert [r["state"] for r in model.replicas] == ["not loaded (lazy)"]
    assert actor_keys_on_workers(observer) <= before  # nothing of ours left (others may go)

    assert model.run("hi").label  # loads again on demand
    assert _resident(model) == 1
    model.close()


def test_a_replica_scaled_down_with_a_call_in_flight_leaves_once_it_answered(
    connection, observer, tmp_path, caplog
):
    path = save_fault_model(str(tmp_path / "model"))
    initializer = _initializer(connection, max_replicas=2, target_ongoing_requests=2)
    model = initializer.init(ModuleConfig.load(path))
    callers = _Callers(model, 6)
    try:
        poll(lambda: _resident(model) == 2, 60, what="growth to 2 replicas")
    finally:
        callers.join()
    assert not callers.failures
    keys = {r["key"] for r in model.replicas}
    with caplog.at_level(logging.INFO):
        # One slow call on each replica: 2 in flight fit the target on one replica.
        slow = run_in_threads(lambda _: model.run("sleep:3").label, 2)
    [(first, _), (second, _)] = slow
    assert isinstance(first, str) and isinstance(second, str), slow
    assert first != second  # one call on each replica, each answered
    [decision] = _decisions(caplog, "<DSK50000023I>")
    assert decision.endswith("leaves after its 1 calls in flight")
    poll(lambda: len(actor_keys_on_workers(observer) & keys) == 1, 30, what="its actor released")
    assert _resident(model) == 1
    model.close()
