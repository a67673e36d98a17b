"""Topic subscriptions: an event logged right after ``subscribe`` returns is heard."""

from __future__ import annotations

import threading

from distributed import Client, LocalCluster

from caikit_dask.topics import subscribe


def test_an_event_logged_at_once_by_another_client_reaches_the_subscriber():
    with (
        LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as listener,
        Client(cluster, set_as_default=False) as announcer,
    ):
        for round_ in range(20):
            topic, heard = f"caikit-dask-test-{round_}", threading.Event()
            subscribe(listener, topic, lambda event, heard=heard: heard.set())
            announcer.log_event(topic, {"round": round_})
            assert heard.wait(10), f"the event of round {round_} was never heard"
