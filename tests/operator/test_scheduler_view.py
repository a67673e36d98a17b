"""The scheduler's own view: ``/caikit-dask/status.json``, its ``/metrics``, recent
evictions and moves, trainings by status; all from a plugin sent by value."""

from __future__ import annotations

import os

import dask
import pytest
import requests
from caikit.core.modules import ModuleConfig
from cluster_support import poll, unpickled_without_caikit_dask, worker_env
from distributed import Client, LocalCluster
from memory_testlib import memory_fraction_for, save_memory_model
from metrics_support import scrape, value
from operator_support import cli_json

from caikit_dask import DaskModelInitializer, DaskModelTrainer
from caikit_dask.connection import DaskConnection
from caikit_dask.example import TextClassifier
from caikit_dask.scheduler_view.plugin import OperatorView
from caikit_dask.scheduler_view.snapshot import training_status

pytestmark = pytest.mark.slow


def http_base(cluster) -> str:
    return f"http://127.0.0.1:{cluster.scheduler_info['services']['dashboard']}"


def test_the_plugin_travels_by_value():
    shown = unpickled_without_caikit_dask(OperatorView(), "obj.name, len(obj.moves)")
    assert shown.split() == ["caikit-dask-operator-view", "0"]


def test_the_json_endpoint_is_what_status_json_prints(local_cluster, served):
    answer = requests.get(f"{http_base(local_cluster)}/caikit-dask/status.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    served_json = answer.json()
    printed = cli_json("status", "--scheduler", local_cluster.scheduler_address)
    for status in (served_json, printed):
        del status["time"]
        for worker in status["workers"]:  # moves by the bytes of a load in between
            worker.pop("free")
    assert served_json["models"] == printed["models"]
    assert {m["model"] for m in served_json["models"]} >= set(served)
    page = requests.get(f"{http_base(local_cluster)}/caikit-dask", timeout=10)
    assert page.status_code == 200 and "<title>caikit-dask</title>" in page.text


def test_the_schedulers_metrics_show_workers_models_and_trainings(local_cluster, served):
    text = requests.get(f"{http_base(local_cluster)}/metrics", timeout=10).text
    samples = scrape(text)
    assert "dask_scheduler_workers" in text  # Dask's own, beside ours
    workers = local_cluster.scheduler_info["workers"]
    for address in workers:
        assert value(samples, "caikit_dask_worker_models", worker=address) >= 1
        assert value(samples, "caikit_dask_worker_model_memory_booked_bytes", worker=address) > 0
        memory_limit = workers[address]["memory_limit"]
        assert value(
            samples, "caikit_dask_worker_model_memory_bytes", worker=address
        ) == pytest.approx(memory_limit * 0.8 * dask.config.get("distributed.worker.memory.pause"))
    for name in served:
        assert value(samples, "caikit_dask_cluster_model_replicas", model=name, state="loaded") == 2
    assert ("caikit_dask_cluster_trainings", (("status", "QUEUED"),)) in samples


def test_the_cluster_wide_training_status_agrees_with_the_trainer(local_cluster):
    address = local_cluster.scheduler_address
    trainer = DaskModelTrainer({"connection": {"address": address}}, "view-trainings")
    completed = trainer.train(TextClassifier, epochs=2)
    errored = trainer.train(TextClassifier, epochs=-1)  # the example refuses it
    canceled = trainer.train(TextClassifier, epochs=10000, sleep_per_epoch=0.05)
    completed.wait()
    errored.wait()
    poll(lambda: canceled.get_info().status.name == "RUNNING", 30, what="a running training")
    canceled.cancel()
    poll(lambda: canceled.get_info().status.is_terminal, 30, what="the cancel")
    expected = {f.id: f.get_info().status.name for f in (completed, errored, canceled)}

    def seen():
        listed = cli_json("status", "--scheduler", address)["trainings"]["list"]
        return {t["id"]: t["status"] for t in listed if t["id"] in expected}

    poll(lambda: seen() == expected, 30, what=f"the scheduler's view to say {expected}")
    assert set(expected.values()) == {"COMPLETED", "ERRORED", "CANCELED"}


def test_training_status_rules():
    assert training_status([], "waiting", None) == "QUEUED"
    assert training_status([{"state": "running"}], "processing", None) == "RUNNING"
    assert training_status([], "processing", None) == "RUNNING"  # its event was dropped
    assert training_status([{"state": "running"}], "waiting", None) == "QUEUED"  # retried
    assert training_status([], "memory", None) == "COMPLETED"
    assert training_status([], None, 1.0) == "COMPLETED"  # finished, result released
    assert training_status([{"state": "canceled"}], "erred", None) == "CANCELED"
    assert training_status([{"state": "errored"}], "erred", None) == "ERRORED"
    assert training_status([], None, None) == "ERRORED"  # lost


@pytest.fixture
def small_cluster(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    cluster = LocalCluster(
        n_workers=3,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="600MB",
    )
    yield cluster
    DaskConnection.close_all()
    cluster.close()


def test_moves_and_evictions_are_shown_and_counted(small_cluster, tmp_path, trained_model_dir):
    connection = {"address": small_cluster.scheduler_address}
    plain = DaskModelInitializer(
        {"connection": connection, "call_timeout": "30s", "health_check_period": "0.5s"}, "mover"
    )
    before = scrape()
    mover = plain.init(ModuleConfig.load(trained_model_dir))
    leaving = mover.replicas[0]["worker"]
    with Client(small_cluster.scheduler_address, set_as_default=False) as admin:
        admin.retire_workers([leaving], close_workers=True)
    model = os.path.basename(trained_model_dir)
    poll(lambda: mover.replicas[0]["worker"] != leaving, 30, what="the model to move")
    base = http_base(small_cluster)
    status = poll(
        lambda: (
            (s := requests.get(f"{base}/caikit-dask/status.json", timeout=10).json())
            and s["recent"]["moves"]
            and s
        ),
        30,
        what="the move in the view",
    )
    move = status["recent"]["moves"][0]
    assert (move["model"], move["from"], move["to"]) == (
        model,
        leaving,
        mover.replicas[0]["worker"],
    )
    assert (
        value(scrape(), "caikit_dask_model_moves_total", model=model)
        - value(before, "caikit_dask_model_moves_total", model=model)
        == 1
    )

    with Client(small_cluster.scheduler_address, set_as_default=False) as admin:
        fraction = memory_fraction_for(admin, 2.5, 100)  # room for two per worker
    lru = DaskModelInitializer(
        {
            "connection": connection,
            "memory_fraction": fraction,
            "eviction": "lru",
        },
        "evicting",
    )
    paths = [save_memory_model(str(tmp_path / f"weights-{i}"), 100) for i in range(5)]
    models = [lru.init(ModuleConfig.load(path)) for path in paths[:4]]  # 2 workers x 2 fill them
    for later in models[1:]:
        later.run("hi")
    newcomer = lru.init(ModuleConfig.load(paths[4]))
    status = requests.get(f"{base}/caikit-dask/status.json", timeout=10).json()
    eviction = status["recent"]["evictions"][0]
    assert (eviction["model"], eviction["for"]) == ("weights-0", "weights-4")
    assert value(scrape(), "caikit_dask_model_evictions_total", model="weights-0") >= 1
    text = requests.get(f"{base}/metrics", timeout=10).text
    assert value(scrape(text), "caikit_dask_cluster_evictions_total") >= 1
    assert value(scrape(text), "caikit_dask_cluster_moves_total") == 1
    assert value(scrape(), "caikit_dask_model_loads_total", model="weights-0", reason="load") >= 1
    models[0].run("again")  # reloads on demand, evicting in turn
    assert value(scrape(), "caikit_dask_model_loads_total", model="weights-0", reason="reload") >= 1
    for proxy in [mover, *models, newcomer]:
        proxy.close()
