"""The parts of gang trainings that need no cluster: which workers a gang is admitted on,
each rank's environment, putting a process's environment back, and the world size."""

import os

import dask
import pytest

from caikit_dask.config import BackendConfig
from caikit_dask.errors import DaskConfigError
from caikit_dask.training.gang.admission import choose_workers, matching
from caikit_dask.training.gang.environment import (
    free_port,
    process_environment,
    rank_environment,
)
from caikit_dask.training.gang.size import world_size_for


def worker(address, pid, gpus=1, used=0, busy=0, nthreads=1, running=True):
    return {
        "address": address,
        "host": address.split("//")[1].rsplit(":", 1)[0],
        "pid": pid,
        "resources": {"GPU": gpus} if gpus else {},
        "used": {"GPU": used} if used else {},
        "busy": busy,
        "nthreads": nthreads,
        "running": running,
    }


GPU = {"GPU": 1}


def test_a_gang_is_admitted_only_on_workers_whose_resources_and_a_thread_are_free():
    workers = [
        worker("tcp://a:1", 1),
        worker("tcp://b:1", 2, used=1),  # its GPU is taken
        worker("tcp://c:1", 3, busy=1),  # its only thread is taken
        worker("tcp://d:1", 4),
    ]
    assert choose_workers(workers, 2, GPU, held=set()) == ["tcp://a:1", "tcp://d:1"]
    assert choose_workers(workers, 3, GPU, held=set()) is None  # never a part of a gang
    assert choose_workers(workers, 2, GPU, held={"tcp://d:1"}) is None  # another gang's
    assert matching(workers, GPU) == 4  # they could all run a rank, once free


def test_one_rank_per_worker_process_and_least_busy_first():
    workers = [
        worker("tcp://h:1", 7, nthreads=4, busy=2),
        worker("tcp://h:2", 7, nthreads=4),  # the same process: counts once
        worker("tcp://h:3", 8, nthreads=4, busy=1),
        worker("tcp://x:1", 9, gpus=0),
        worker("tcp://y:1", 10, running=False),  # paused or closing
    ]
    assert choose_workers(workers, 2, GPU, held=set()) == ["tcp://h:2", "tcp://h:3"]
    assert matching(workers, GPU) == 2
    assert matching(workers, {}) == 3  # no resources wanted: any running process
    assert choose_workers(workers, 3, {}, held=set()) == ["tcp://h:2", "tcp://x:1", "tcp://h:3"]


def test_rank_environment_counts_the_ranks_on_each_host():
    workers = ["tcp://10.0.0.5:4001", "tcp://10.0.0.6:4001", "tcp://10.0.0.5:4002"]
    environments = [rank_environment(rank, workers, 29512) for rank in range(3)]
    assert [(e["RANK"], e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) for e in environments] == [
        ("0", "0", "2"),
        ("1", "0", "1"),
        ("2", "1", "2"),
    ]
    for environment in environments:
        assert environment["WORLD_SIZE"] == "3"
        assert (environment["MASTER_ADDR"], environment["MASTER_PORT"]) == ("10.0.0.5", "29512")


def test_the_process_environment_is_put_back_exactly(monkeypatch):
    monkeypatch.setenv("GANG_TEST_KEPT", "before")
    monkeypatch.setenv("GANG_TEST_REMOVED", "before")
    monkeypatch.delenv("RANK", raising=False)
    with process_environment({"RANK": "3", "GANG_TEST_KEPT": "during"}):
        assert os.environ["RANK"] == "3" and os.environ["GANG_TEST_KEPT"] == "during"
        os.environ["GANG_TEST_ADDED"] = "by the training"
        del os.environ["GANG_TEST_REMOVED"]
    assert "RANK" not in os.environ and "GANG_TEST_ADDED" not in os.environ
    assert os.environ["GANG_TEST_KEPT"] == os.environ["GANG_TEST_REMOVED"] == "before"


def test_a_free_port_can_be_bound_on_the_host():
    import socket

    port = free_port("127.0.0.1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_world_size_layers_config_module_and_annotation():
    assert world_size_for(1, {}, "m") == 1
    assert world_size_for(2, {"m": 4}, "m") == 4
    assert world_size_for(2, {"m": 4}, "other") == 2
    with dask.annotate(world_size=3):
        assert world_size_for(2, {"m": 4}, "m") == 3
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="world_size"), dask.annotate(world_size=bad):
            world_size_for(1, {}, "m")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"world_size": 0}, "world_size"),
        ({"world_size": "2"}, "world_size"),
        ({"module_world_size": {"m": 0}}, "module_world_size.m"),
    ],
)
def test_bad_world_size_config_names_the_key(config, key):
    with pytest.raises(DaskConfigError, match=key):
        BackendConfig.from_mapping(config, allowed=BackendConfig.TRAINER_KEYS)


def test_world_size_is_a_trainer_key_only():
    assert {"world_size", "module_world_size"} <= BackendConfig.TRAINER_KEYS
    assert not {"world_size", "module_world_size"} & BackendConfig.INITIALIZER_KEYS
    config = BackendConfig.from_mapping({"world_size": 2, "module_world_size": {"m": 3}})
    assert (config.world_size, config.module_world_size) == (2, {"m": 3})


def test_what_runs_on_the_scheduler_travels_by_value():
    from cluster_support import unpickled_without_caikit_dask

    from caikit_dask.training.gang.book import GangBook, cancel_training, count_matching
    from caikit_dask.training.on_scheduler import _gang_facts_reader

    assert unpickled_without_caikit_dask(GangBook(), "obj.name") == "caikit-dask-gang-book"
    for function in (count_matching, cancel_training, _gang_facts_reader()):
        assert unpickled_without_caikit_dask(function, "obj.__name__") == function.__name__
