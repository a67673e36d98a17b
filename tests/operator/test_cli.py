"""``caikit-dask`` from a fresh process that loaded nothing: what the scheduler knows is enough."""

from __future__ import annotations

import pytest
import tomllib
import yaml
from cluster_support import REPO_DIR, poll
from operator_support import cli, cli_json

from caikit_dask import DaskModelTrainer
from caikit_dask.example import TextClassifier

pytestmark = pytest.mark.slow


def test_the_console_script_runs_the_same_main():
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["caikit-dask"] == "caikit_dask.cli:main"


def test_status_json_lists_every_model_with_its_replicas(local_cluster, served):
    status = cli_json("status", "--scheduler", local_cluster.scheduler_address)
    by_name = {model["model"]: model for model in status["models"]}
    assert set(served) <= set(by_name)
    for name, proxy in served.items():
        model = by_name[name]
        assert model["module_id"] == TextClassifier.MODULE_ID
        assert sorted(r["worker"] for r in model["replicas"]) == sorted(
            r["worker"] for r in proxy.replicas
        )
        assert {r["state"] for r in model["replicas"]} == {"loaded"}
        assert all(r["bytes"] > 0 for r in model["replicas"])
    workers = {w["worker"]: w for w in status["workers"]}
    assert set(workers) == set(local_cluster.scheduler_info["workers"])
    assert sum(w["models"] for w in workers.values()) >= 2 * len(served)
    assert set(status["trainings"]["counts"]) == {
        "QUEUED",
        "RUNNING",
        "COMPLETED",
        "ERRORED",
        "CANCELED",
    }


def test_status_prints_tables_a_person_reads(local_cluster, served):
    done = cli("status", "--scheduler", local_cluster.scheduler_address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"scheduler {local_cluster.scheduler_address}: ")
    header = next(line for line in lines if line.startswith("MODEL "))
    assert header.split() == ["MODEL", "MODULE", "ID", "WORKER", "STATE", "MEMORY"]
    rows = [line for line in lines if line.startswith(tuple(served))]
    assert len(rows) == len(served)
    # Columns line up: every replica's worker starts where the header's WORKER does.
    column = header.index("WORKER")
    replica_lines = lines[lines.index(header) + 1 : lines.index("WORKERS") - 1]
    assert all(line[column : column + 6] == "tcp://" for line in replica_lines)
    assert any(line.startswith("TRAININGS  queued ") for line in lines)


def test_models_and_the_scheduler_from_the_environment_or_a_caikit_config(
    local_cluster, served, tmp_path
):
    address = local_cluster.scheduler_address
    from_env = cli("models", env={"DASK_SCHEDULER_ADDRESS": address})
    assert from_env.returncode == 0, from_env.stderr
    assert from_env.stdout.split()[:5] == ["MODEL", "MODULE", "ID", "LOADED", "MEMORY"]
    assert all(name in from_env.stdout for name in served)
    config = tmp_path / "caikit.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_management": {
                    "initializers": {
                        "default": {"type": "DASK", "config": {"connection": {"address": address}}}
                    }
                }
            }
        )
    )
    models = cli_json("models", "--config", str(config))
    assert {m["model"] for m in models} >= set(served)


def test_no_scheduler_and_an_unreachable_one_are_one_line_errors():
    missing = cli("status", env={"DASK_SCHEDULER_ADDRESS": ""})
    assert missing.returncode == 2
    assert "no scheduler given: pass --scheduler" in missing.stderr
    assert "Traceback" not in missing.stderr
    down = cli("status", "--scheduler", "tcp://127.0.0.1:9", "--timeout", "1s")
    assert down.returncode == 1
    assert down.stderr.startswith(
        "caikit-dask: Could not reach the Dask scheduler at tcp://127.0.0.1:9"
    )
    assert "Traceback" not in down.stderr and down.stderr.count("\n") == 1


def test_trainings_list_logs_and_delete(local_cluster, tmp_path):
    address = local_cluster.scheduler_address
    trainer = DaskModelTrainer({"connection": {"address": address}}, "cli-test")
    save_path = str(tmp_path / "trained")
    future = trainer.train(TextClassifier, epochs=3, save_path=save_path)
    future.wait()
    listed = {t["id"]: t for t in cli_json("trainings", "list", "--scheduler", address)}
    assert listed[future.id]["status"] == "COMPLETED"
    assert listed[future.id]["save_path"] == save_path
    logs = cli("trainings", "logs", future.id, "--scheduler", address)
    assert logs.returncode == 0, logs.stderr
    assert "epoch 3/3" in logs.stdout
    status = cli_json("status", "--scheduler", address)
    assert status["trainings"]["counts"]["COMPLETED"] >= 1
    deleted = cli("trainings", "delete", future.id, "--delete-results", "--scheduler", address)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted training {future.id}" in deleted.stdout
    assert not (tmp_path / "trained").exists()
    gone = cli("trainings", "logs", future.id, "--scheduler", address)
    assert gone.returncode == 1 and f"Unknown training_id: {future.id}" in gone.stderr
    poll(
        lambda: future.id not in {listed.id for listed in trainer.list_trainings()},
        timeout=10,
        what="the deleted training gone from the listing",
    )


def test_trainings_logs_follow_prints_lines_as_they_come(local_cluster):
    address = local_cluster.scheduler_address
    trainer = DaskModelTrainer({"connection": {"address": address}}, "cli-follow")
    future = trainer.train(TextClassifier, epochs=8, sleep_per_epoch=0.2)
    done = cli("trainings", "logs", future.id, "--follow", "--scheduler", address)
    assert done.returncode == 0, done.stderr
    assert "epoch 8/8" in done.stdout  # followed to the end of the training
    assert future.get_info().status.name == "COMPLETED"
