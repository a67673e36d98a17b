"""Worker death under traffic: no failed calls with two replicas, recovery with one."""

import threading
import time

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll

from caikit_dask import DaskModelInitializer

pytestmark = pytest.mark.slow


def _initializer(cluster, replicas):
    return DaskModelInitializer(
        {
            "connection": {"address": cluster.address},
            "replicas": replicas,
            "call_timeout": "30s",
            "health_check_period": "0.5s",
        },
        f"recovery-{replicas}",
    )


def test_kill_a_replica_worker_during_traffic(process_cluster, trained_model_dir):
    for name in ("a", "b", "c"):
        process_cluster.add_worker(name)
    model = _initializer(process_cluster, 2).init(ModuleConfig.load(trained_model_dir))
    expected = model.run("What a wonderful day").label
    workers = {r["worker"] for r in model.replicas}
    assert len(workers) == 2

    stop, failures, calls = threading.Event(), [], []

    def traffic():
        while not stop.is_set():
            try:
                calls.append(model.run("What a wonderful day").label)
            except Exception as err:  # noqa: BLE001 - every failure is a test failure
                failures.append(err)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    poll(lambda: len(calls) > 50, 30, what="traffic")
    victim = sorted(workers)[0]
    process_cluster.kill_worker(process_cluster.worker_name_at(victim))
    killed_at = len(calls)
    poll(
        lambda: (
            len([r for r in model.replicas if r["alive"]]) == 2
            and victim not in {r["worker"] for r in model.replicas}
        ),
        60,
        what="the lost replica to be re-placed",
    )
    poll(lambda: len(calls) > killed_at + 100, 30, what="traffic after recovery")
    stop.set()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert set(calls) == {expected}
    assert len({r["worker"] for r in model.replicas}) == 2
    model.close()


def test_single_replica_recovers_on_another_worker(process_cluster, trained_model_dir):
    process_cluster.add_worker("a")
    process_cluster.add_worker("b")
    model = _initializer(process_cluster, 1).init(ModuleConfig.load(trained_model_dir))
    expected = model.run("Great value").label
    [victim] = [r["worker"] for r in model.replicas]
    process_cluster.kill_worker(process_cluster.worker_name_at(victim))
    started = time.monotonic()
    assert model.run("Great value").label == expected  # waits for the reload, within timeout
    assert time.monotonic() - started < 30
    [replacement] = [r["worker"] for r in model.replicas]
    assert replacement != victim
    model.close()


def test_model_path_not_on_the_worker_is_shipped(process_cluster, trained_model_dir, tmp_path):
    """A worker in its own mount namespace cannot see the caller's model directory."""
    import shutil
    import subprocess

    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --mount is not permitted here")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    shutil.copytree(trained_model_dir, hidden / "model")
    process_cluster.add_worker(
        "isolated",
        prefix=[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount -t tmpfs none {hidden} && exec "$@"',
            "worker",
        ],
    )
    address = process_cluster.worker_address("isolated")
    assert not process_cluster.client.run(
        lambda: (hidden / "model" / "config.yml").exists(), workers=[address]
    )[address]
    model = _initializer(process_cluster, 1).init(ModuleConfig.load(str(hidden / "model")))
    assert model.replicas[0]["worker"] == address
    assert model.run("Great value").label
    model.close()


def test_worker_killed_during_model_load(process_cluster, tmp_path):
    from dask_testlib import save_fault_model

    process_cluster.add_worker("a")
    process_cluster.add_worker("b")
    path = save_fault_model(str(tmp_path / "slow-load"), load_seconds=3)
    initializer = _initializer(process_cluster, 1)
    loaded = {}

    def load():
        try:
            loaded["model"] = initializer.init(ModuleConfig.load(path))
        except Exception as err:  # noqa: BLE001 - asserted below
            loaded["error"] = err

    loader = threading.Thread(target=load)
    started = time.monotonic()
    loader.start()

    def loading_worker():
        keys = process_cluster.client.processing()
        return next(
            (w for w, tasks in keys.items() if any("caikit-model" in str(t) for t in tasks)), None
        )

    victim = poll(loading_worker, 20, what="the actor to start loading")
    process_cluster.kill_worker(process_cluster.worker_name_at(victim))
    loader.join(60)
    assert "error" not in loaded, loaded.get("error")
    model = loaded["model"]
    assert model.replicas[0]["worker"] != victim
    assert model.run("x").label
    assert time.monotonic() - started < 30
    model.close()
