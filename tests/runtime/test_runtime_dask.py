"""End to end: a real ``python -m caikit.runtime`` trains and serves on a real Dask cluster.

Processes, all on 127.0.0.1 and all stopped by the fixtures: ``dask scheduler``, a worker
``cpu`` and a worker ``gpu`` (``--resources GPU=1``), and ``caikit.runtime`` whose
``model_management.trainers.default`` and ``initializers.default`` are of type DASK. The
trainer's config asks for ``{GPU: 1}``, so trainings can only run on ``gpu``.

What proves a call was answered on a worker and not in the runtime process: the call
counters of the ``ModelActor`` instances that the Dask workers hold, read from this test
process through the scheduler (``Client.run``). Every predict below must move the counter of
exactly one actor by exactly one, and that actor lives in a ``dask worker`` process whose
pid is not the runtime's. A runtime that ran the model itself would leave the counters alone.
The context-taking module reports the type of the context it received: a worker receives
``ForwardedContext``, an in-process call would see grpc's or starlette's own type.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from cluster_support import ProcessCluster, poll, process_cluster
from runtime_server import HERE, RuntimeServer, deep_merge

from caikit_dask.example import EchoWithContext, TextClassifier
from caikit_dask.training import events

pytestmark = pytest.mark.slow

SERVICE = "caikit.runtime.Dask.DaskService"
TRAINING_SERVICE = "caikit.runtime.Dask.DaskTrainingService"
TRAINING_MANAGEMENT = "caikit.runtime.training.TrainingManagement"
MODEL_MANAGEMENT = "caikit.runtime.models.ModelManagement"
TRAIN_CLASSIFIER = "ExampleTextClassificationTaskTextClassifierTrain"
TASK = "example-text-classification"

TINY_SERVICE = "caikit.runtime.TinyRuntimeLib.TinyRuntimeLibService"
TINY_TRAINING_SERVICE = "caikit.runtime.TinyRuntimeLib.TinyRuntimeLibTrainingService"

# A training set whose labels differ from the bundled sentiment data, so a model that
# answers "spam"/"ham" can only be the one trained through the runtime.
SPAM_HAM = [
    {"text": "win a free prize now", "label": "spam"},
    {"text": "cheap pills, buy now", "label": "spam"},
    {"text": "claim your free money today", "label": "spam"},
    {"text": "you won the lottery, click here", "label": "spam"},
    {"text": "see you at lunch tomorrow", "label": "ham"},
    {"text": "the meeting moved to friday", "label": "ham"},
    {"text": "can you review my notes", "label": "ham"},
    {"text": "thanks for dinner last night", "label": "ham"},
]

# Long enough never to finish during a test (10000 epochs x 50 ms), short enough per epoch
# that a cancel lands at once.
LONG_TRAINING = {"epochs": 10000, "sleep_per_epoch": 0.05, "n_features": 1024}


# -- the cluster and what its workers hold --------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterable[ProcessCluster]:
    """Scheduler + workers ``cpu`` and ``gpu`` (GPU=1); workers can import tiny_runtime_lib."""
    workers = {"cpu": {}, "gpu": {"resources": "GPU=1"}}
    with process_cluster(tmp_path_factory.mktemp("dask"), workers, [HERE]) as cluster:
        yield cluster


def worker_actors(cluster: ProcessCluster) -> list[dict[str, Any]]:
    """Every model actor the workers hold: key, model class, call count, worker name, pid."""

    def probe(dask_worker):  # a closure, so cloudpickle ships it by value

        from caikit_dask.loading.actor.model_actor import ModelActor

        return [
            {
                "key": str(key),
                "model": type(actor.model).__name__,
                "calls": actor.calls,
                "pid": os.getpid(),
            }
            for key, actor in list(dask_worker.state.actors.items())
            if isinstance(actor, ModelActor)
        ]

    names = {address: name for name, address in cluster.worker_names().items()}
    return [
        {**actor, "worker": names[address]}
        for address, actors in cluster.client.run(probe).items()
        for actor in actors
    ]


class ActorCalls:
    """Snapshot of the actors' call counters; ``moved()`` says which actors were called since."""

    def __init__(self, cluster: ProcessCluster):
        self.cluster = cluster
        self.before = {a["key"]: a["calls"] for a in worker_actors(cluster)}

    def moved(self) -> dict[str, int]:
        """{actor key: calls since the snapshot} for the actors that were called."""
        after = {a["key"]: a["calls"] for a in worker_actors(self.cluster)}
        return {
            key: calls - self.before.get(key, 0)
            for key, calls in after.items()
            if calls != self.before.get(key, 0)
        }


def assert_answered_by_one_actor(
    cluster: ProcessCluster, calls: ActorCalls, count: int, model: str, runtime: RuntimeServer
) -> dict[str, Any]:
    """Exactly one actor, holding a ``model``, in a dask worker process, took ``count`` calls."""
    moved = calls.moved()
    assert len(moved) == 1 and list(moved.values()) == [count], moved
    actor = next(a for a in worker_actors(cluster) if a["key"] in moved)
    assert actor["model"] == model
    assert actor["pid"] in {process.pid for process in cluster.workers.values()}
    assert actor["pid"] != runtime.process.pid
    return actor


def training_worker(cluster: ProcessCluster, training_id: str) -> str | None:
    """Name of the worker that started the training, from the scheduler's event log."""
    names = {address: name for name, address in cluster.worker_names().items()}
    for _, msg in cluster.client.get_events(events.STATE_TOPIC):
        if msg.get("id") == training_id and msg.get("state") == events.RUNNING:
            return names.get(msg.get("worker"), msg.get("worker"))
    return None


def running_on(cluster: ProcessCluster, training_id: str) -> list[str]:
    """Workers whose training thread for ``training_id`` is alive right now."""
    from caikit_dask.training.on_worker import is_running_on_worker

    names = {address: name for name, address in cluster.worker_names().items()}
    running = cluster.client.run(is_running_on_worker, training_id)
    return sorted(names[address] for address, alive in running.items() if alive)


def gpu_worker_idle(cluster: ProcessCluster) -> bool:
    return not cluster.client.processing()[cluster.worker_address("gpu")]


# -- runtime configuration ------------------------------------------------------------------


def dask_model_management(address: str, registration: str) -> dict:
    """Trainer and initializer ``default`` of type DASK, registered by ``registration``:
    ``"type"`` (the runtime library imports caikit_dask) or ``"import_class"``."""
    connection = {"address": address, "timeout": "20s"}
    trainer = {
        "type": "DASK",
        "config": {"connection": connection, "resources": {"GPU": 1}, "resource_timeout": "30s"},
    }
    initializer = {"type": "DASK", "config": {"connection": connection, "call_timeout": "30s"}}
    if registration == "import_class":
        trainer["import_class"] = "caikit_dask.DaskModelTrainer"
        initializer["import_class"] = "caikit_dask.DaskModelInitializer"
    return {
        "model_management": {
            "trainers": {"default": trainer},
            "initializers": {"default": initializer},
        }
    }


def runtime_config(address: str, registration: str, models_dir: Path) -> dict:
    """Trained models are saved into local_models_dir as ``<model_name>`` and lazily loaded
    (through the DASK initializer) on their first request."""
    return deep_merge(
        dask_model_management(address, registration),
        {
            "runtime": {
                "local_models_dir": str(models_dir),
                "lazy_load_local_models": True,
                "lazy_load_poll_period_seconds": 3600,  # loads happen on request only
                "training": {"output_dir": str(models_dir), "save_with_id": False},
            }
        },
    )


class Served:
    """The module-wide runtime, with the models it was started with."""

    def __init__(self, server: RuntimeServer, models_dir: Path):
        self.server = server
        self.models_dir = models_dir
        self.classifier = TextClassifier.load(str(models_dir / "classifier"))


@pytest.fixture(scope="module")
def served(cluster, caikit_runtime_module_factory, tmp_path_factory) -> Served:
    """``caikit.runtime`` serving the library ``caikit_dask`` with plain ``type: DASK``;
    ``classifier`` and ``echo`` are loaded (into actors) at startup."""
    models_dir = tmp_path_factory.mktemp("served-models")
    started = time.monotonic()
    server = caikit_runtime_module_factory(
        config=runtime_config(cluster.address, "type", models_dir),
        library="caikit_dask",
        models={
            "classifier": TextClassifier.train(epochs=30, n_features=4096),
            "echo": EchoWithContext(prefix="echo: "),
        },
    )
    print(f"runtime with 2 DASK models ready in {time.monotonic() - started:.1f}s")
    return Served(server, models_dir)


# -- training helpers -----------------------------------------------------------------------


def grpc_status(server: RuntimeServer, training_id: str) -> dict:
    return server.grpc_call(
        f"{TRAINING_MANAGEMENT}/GetTrainingStatus", {"training_id": training_id}
    )


def http_status(server: RuntimeServer, training_id: str) -> dict:
    response = requests.get(
        f"{server.http_url}/management/trainings", params={"training_id": training_id}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_state(
    server: RuntimeServer, training_id: str, wanted: str, timeout: float = 60
) -> dict:
    """Poll GetTrainingStatus until ``wanted``; a different terminal state fails at once."""

    def check():
        status = grpc_status(server, training_id)
        state = status.get("state")
        if state in ("COMPLETED", "CANCELED", "ERRORED") and state != wanted:
            pytest.fail(f"training {training_id} is {state}, not {wanted}: {status}")
        return status if state == wanted else None

    return poll(check, timeout, interval=0.1, what=f"training {training_id} {wanted}")


def train_classifier_over_grpc(server: RuntimeServer, model_name: str, **parameters) -> str:
    reply = server.grpc_call(
        f"{TRAINING_SERVICE}/{TRAIN_CLASSIFIER}",
        {"model_name": model_name, "parameters": parameters},
    )
    assert reply["model_name"] == model_name
    return reply["training_id"]


# -- serving --------------------------------------------------------------------------------


def test_models_are_loaded_into_actors_on_workers(served, cluster):
    info = served.server.grpc_call("caikit.runtime.info.InfoService/GetModelsInfo")
    assert {m["name"]: m["module_id"] for m in info["models"]} == {
        "classifier": TextClassifier.MODULE_ID,
        "echo": EchoWithContext.MODULE_ID,
    }
    actors = worker_actors(cluster)
    assert {"EchoWithContext", "TextClassifier"} <= {a["model"] for a in actors}, actors
    worker_pids = {process.pid for process in cluster.workers.values()}
    assert all(a["pid"] in worker_pids for a in actors)


def test_unary_predict_over_grpc_and_http_runs_on_a_worker(served, cluster):
    text = "What a lovely, wonderful day"
    expected = served.classifier.run(text)

    calls = ActorCalls(cluster)
    over_grpc = served.server.grpc_call(
        f"{SERVICE}/ExampleTextClassificationTaskPredict", {"text": text}, model_id="classifier"
    )
    assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)
    calls = ActorCalls(cluster)
    response = served.server.http_predict(TASK, "classifier", text)
    assert response.status_code == 200, response.text
    assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)

    for result in (over_grpc, response.json()):
        assert result["label"] == expected.label
        assert result["score"] == pytest.approx(expected.score)
        assert [s["label"] for s in result["scores"]] == [s.label for s in expected.scores]


def test_output_streaming_over_grpc_and_http_runs_on_a_worker(served, cluster):
    text = "The start was great. The middle dragged on. The ending was awful!"
    expected = [
        (item.text, item.cumulative_label)
        for item in served.classifier.run_stream(text, unit="sentence")
    ]
    assert len(expected) == 3

    calls = ActorCalls(cluster)
    over_grpc = served.server.grpc_stream(
        f"{SERVICE}/ServerStreamingExampleTextClassificationTaskPredict",
        {"text": text, "unit": "sentence"},
        model_id="classifier",
    )
    assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)
    calls = ActorCalls(cluster)
    over_http = served.server.http_stream(TASK, "classifier", text, {"unit": "sentence"})
    assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)

    assert [(r["text"], r["cumulative_label"]) for r in over_grpc] == expected
    assert [event for event, _ in over_http] == ["message"] * 3, over_http
    assert [(r["text"], r["cumulative_label"]) for _, r in over_http] == expected


def test_bidi_streaming_over_grpc_runs_on_a_worker(served, cluster):
    texts = ["I love it", "I hate it", "Wonderful"]
    expected = [item.cumulative_label for item in served.classifier.run_bidi_stream(iter(texts))]

    calls = ActorCalls(cluster)
    replies = served.server.grpc_bidi(
        f"{SERVICE}/BidiStreamingExampleTextClassificationTaskPredict",
        [{"text_stream": text} for text in texts],
        model_id="classifier",
    )
    assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)
    assert [r["cumulative_label"] for r in replies] == expected


def test_request_context_reaches_the_module_on_the_worker(served, cluster):
    calls = ActorCalls(cluster)
    over_grpc = served.server.grpc_call(
        f"{SERVICE}/EchoTaskPredict",
        {"text": "hi", "metadata_key": "x-tenant"},
        model_id="echo",
        metadata={"x-tenant": "acme-grpc"},
    )
    assert_answered_by_one_actor(cluster, calls, 1, "EchoWithContext", served.server)
    calls = ActorCalls(cluster)
    response = served.server.http_predict(
        "echo", "echo", "hi", {"metadata_key": "x-tenant"}, headers={"X-Tenant": "acme-http"}
    )
    assert response.status_code == 200, response.text
    assert_answered_by_one_actor(cluster, calls, 1, "EchoWithContext", served.server)

    # In-process the module would see grpc's _Context or starlette's Request.
    for result, value in ((over_grpc, "acme-grpc"), (response.json(), "acme-http")):
        assert result == {
            "text": "echo: hi",
            "has_context": True,
            "context_type": "ForwardedContext",
            "metadata_value": value,
        }


def test_deploy_and_undeploy_through_model_management(served, cluster):
    """DeployModel (HTTP) loads uploaded files through the DASK initializer into a new actor;
    UndeployModel releases that actor."""
    source = served.models_dir / "classifier"
    files = [
        {"filename": path.name, "data": base64.b64encode(path.read_bytes()).decode()}
        for path in sorted(source.iterdir())
    ]
    before = {a["key"] for a in worker_actors(cluster)}
    response = requests.post(
        f"{served.server.http_url}/management/models",
        json={"model_id": "deployed", "model_files": files},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "deployed"  # the load goes on in the background
    new = poll(
        lambda: [a for a in worker_actors(cluster) if a["key"] not in before],
        30,
        interval=0.1,
        what="the deployed model's actor",
    )
    assert [a["model"] for a in new] == ["TextClassifier"], new

    calls = ActorCalls(cluster)
    result = served.server.grpc_call(
        f"{SERVICE}/ExampleTextClassificationTaskPredict", {"text": "Awful"}, model_id="deployed"
    )
    actor = assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)
    assert actor["key"] == new[0]["key"]
    assert result["label"] == served.classifier.run("Awful").label

    response = requests.delete(
        f"{served.server.http_url}/management/models",
        params={"model_id": "deployed"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    poll(
        lambda: new[0]["key"] not in {a["key"] for a in worker_actors(cluster)},
        30,
        interval=0.2,
        what="the undeployed model's actor to be released",
    )


# -- training -------------------------------------------------------------------------------


def test_train_over_http_then_status_then_serve_the_trained_model(served, cluster):
    response = requests.post(
        f"{served.server.http_url}/api/v1/{TRAIN_CLASSIFIER}",
        json={
            "model_name": "spam-filter",
            "parameters": {
                "training_data": {"data_stream": {"data": SPAM_HAM}},
                "epochs": 60,
                "n_features": 2048,
            },
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    training_id = response.json()["training_id"]

    status = wait_for_state(served.server, training_id, "COMPLETED")
    assert status["training_id"] == training_id
    assert not status.get("reasons")
    assert status["submission_timestamp"] <= status["completion_timestamp"]
    assert http_status(served.server, training_id)["state"] == "COMPLETED"
    # The trainer's {GPU: 1} sent it to the only worker with that resource.
    assert training_worker(cluster, training_id) == "gpu"

    saved = served.models_dir / "spam-filter"
    assert (saved / "config.yml").is_file()
    trained = TextClassifier.load(str(saved))
    assert trained.labels == ["ham", "spam"]

    # First request lazy-loads the saved model through the DASK initializer, into an actor.
    text = "claim a free prize now"
    calls = ActorCalls(cluster)
    over_grpc = served.server.grpc_call(
        f"{SERVICE}/ExampleTextClassificationTaskPredict", {"text": text}, model_id="spam-filter"
    )
    assert_answered_by_one_actor(cluster, calls, 1, "TextClassifier", served.server)
    over_http = served.server.http_predict(TASK, "spam-filter", text)
    assert over_http.status_code == 200, over_http.text
    expected = trained.run(text)
    assert expected.label == "spam"
    for result in (over_grpc, over_http.json()):
        assert result["label"] == expected.label
        assert result["score"] == pytest.approx(expected.score)


def test_train_over_grpc_from_a_training_data_file(served, cluster, tmp_path):
    """A file data source: the worker reads the file (it shares this machine's filesystem)."""
    data_file = tmp_path / "spam-ham.json"
    data_file.write_text(json.dumps(SPAM_HAM))
    training_id = train_classifier_over_grpc(
        served.server,
        "spam-filter-from-file",
        training_data={"file": {"filename": str(data_file)}},
        epochs=60,
        n_features=2048,
    )
    wait_for_state(served.server, training_id, "COMPLETED")
    assert training_worker(cluster, training_id) == "gpu"
    trained = TextClassifier.load(str(served.models_dir / "spam-filter-from-file"))
    assert trained.labels == ["ham", "spam"]
    assert trained.training_metrics["n_examples"] == len(SPAM_HAM)

    # A file that does not exist fails at the call, with caikit's own message.
    with pytest.raises(grpc.RpcError) as failure:
        train_classifier_over_grpc(
            served.server,
            "no-data",
            training_data={"file": {"filename": str(tmp_path / "missing.json")}},
        )
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "missing.json" in failure.value.details()


def test_cancel_a_long_training_over_grpc(served, cluster):
    training_id = train_classifier_over_grpc(served.server, "never-finished", **LONG_TRAINING)
    running = wait_for_state(served.server, training_id, "RUNNING")
    assert "completion_timestamp" not in running
    assert poll(lambda: running_on(cluster, training_id), 30, what="the training thread") == ["gpu"]

    canceled = served.server.grpc_call(
        f"{TRAINING_MANAGEMENT}/CancelTraining", {"training_id": training_id}
    )
    assert canceled["state"] == "CANCELED"
    assert grpc_status(served.server, training_id)["state"] == "CANCELED"
    assert http_status(served.server, training_id)["state"] == "CANCELED"

    # Really stopped: no training thread left, the GPU worker has nothing to do.
    poll(lambda: not running_on(cluster, training_id), 30, what="the training thread to end")
    poll(lambda: gpu_worker_idle(cluster), 30, what="the GPU worker to be idle")
    assert not (served.models_dir / "never-finished").exists()


def test_restarted_runtime_reports_the_same_training(cluster, caikit_runtime_factory, tmp_path):
    """Stop the runtime that started a training; a new one (same scheduler) finds it by id."""
    config = runtime_config(cluster.address, "type", tmp_path / "models")
    first = caikit_runtime_factory(config=config, library="caikit_dask")
    training_id = train_classifier_over_grpc(first, "outlives-its-runtime", **LONG_TRAINING)
    submitted = wait_for_state(first, training_id, "RUNNING")["submission_timestamp"]
    assert first.stop() is not None
    assert first.process.poll() is not None

    # The training keeps running on its worker with no runtime at all.
    assert running_on(cluster, training_id) == ["gpu"]

    second = caikit_runtime_factory(config=config, library="caikit_dask")
    assert second.process.pid != first.process.pid
    status = grpc_status(second, training_id)
    assert status["training_id"] == training_id
    assert status["state"] == "RUNNING"
    assert status["submission_timestamp"] == submitted
    assert http_status(second, training_id)["state"] == "RUNNING"

    # ... and can control it.
    canceled = second.grpc_call(
        f"{TRAINING_MANAGEMENT}/CancelTraining", {"training_id": training_id}
    )
    assert canceled["state"] == "CANCELED"
    poll(lambda: not running_on(cluster, training_id), 30, what="the training thread to end")
    poll(lambda: gpu_worker_idle(cluster), 30, what="the GPU worker to be idle")


# -- registration by import_class, another library ------------------------------------------


def test_import_class_registration_trains_and_serves_another_library(
    cluster, caikit_runtime_factory, tmp_path
):
    """``import_class: caikit_dask.DaskModelTrainer`` / ``DaskModelInitializer`` with the
    runtime library ``tiny_runtime_lib``, which does not import caikit_dask: the factories'
    import alone brings in the DASK trainer and initializer."""
    from tiny_runtime_lib import Greeter

    models_dir = tmp_path / "models"
    server = caikit_runtime_factory(
        config=runtime_config(cluster.address, "import_class", models_dir),
        library="tiny_runtime_lib",
        models={"greeter": Greeter(greeting="Hi")},
    )
    calls = ActorCalls(cluster)
    reply = server.grpc_call(
        f"{TINY_SERVICE}/GreetingTaskPredict", {"name": "Ann"}, model_id="greeter"
    )
    assert reply == {"text": "Hi, Ann!", "length": "8"}
    assert_answered_by_one_actor(cluster, calls, 1, "Greeter", server)
    calls = ActorCalls(cluster)
    response = server.http_predict("greeting", "greeter", "Bob")
    assert response.status_code == 200, response.text
    assert response.json() == {"text": "Hi, Bob!", "length": 8}
    assert_answered_by_one_actor(cluster, calls, 1, "Greeter", server)

    training = server.grpc_call(
        f"{TINY_TRAINING_SERVICE}/GreetingTaskGreeterTrain",
        {"model_name": "howdy", "parameters": {"greeting": "Howdy"}},
    )
    wait_for_state(server, training["training_id"], "COMPLETED")
    assert training_worker(cluster, training["training_id"]) == "gpu"
    calls = ActorCalls(cluster)
    reply = server.grpc_call(
        f"{TINY_SERVICE}/GreetingTaskPredict", {"name": "Cy"}, model_id="howdy"
    )
    assert reply["text"] == "Howdy, Cy!"
    assert_answered_by_one_actor(cluster, calls, 1, "Greeter", server)
