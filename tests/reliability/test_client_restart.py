"""A new process reattaches to running trainings and to published models by id."""

import json
import subprocess
import sys
import textwrap

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.modules import ModuleConfig
from cluster_support import actor_keys_on_workers, poll

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.example import TextClassifier

pytestmark = pytest.mark.slow

FIRST_PROCESS = textwrap.dedent(
    """
    import json, sys
    from caikit.core.modules import ModuleConfig
    from caikit_dask import DaskModelInitializer, DaskModelTrainer
    from caikit_dask.example import TextClassifier
    connection = {"address": sys.argv[1]}
    trainer = DaskModelTrainer({"connection": connection}, "default")
    training = trainer.train(TextClassifier, epochs=100_000, sleep_per_epoch=0.05)  # until canceled
    model = DaskModelInitializer({"connection": connection, "replicas": 2}, "default").init(
        ModuleConfig.load(sys.argv[2])
    )
    model.publish("sentiment")
    print(json.dumps({"training": training.id, "keys": [r["key"] for r in model.replicas],
                      "label": model.run("What a lovely day").label}))
    # the process exits without closing anything: as a crashed runtime would
    import os
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_new_process_reattaches_to_trainings_and_published_models(
    process_cluster, trained_model_dir
):
    process_cluster.add_worker("a")
    process_cluster.add_worker("b")
    result = subprocess.run(
        [sys.executable, "-c", FIRST_PROCESS, process_cluster.address, trained_model_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads(result.stdout.strip().splitlines()[-1])

    connection = {"address": process_cluster.address}
    trainer = DaskModelTrainer({"connection": connection}, "default")
    training = trainer.get_model_future(first["training"])
    assert training.get_info().status in (JobStatus.QUEUED, JobStatus.RUNNING)
    training.cancel()
    assert training.get_info().status is JobStatus.CANCELED

    backend = DaskBackend({"connection": connection})
    model = backend.attach("sentiment")
    assert {r["key"] for r in model.replicas} == set(first["keys"])
    assert model.run("What a lovely day").label == first["label"]

    model.close()  # an attached proxy drops its handles; the publication keeps the actors
    assert set(first["keys"]) <= actor_keys_on_workers(process_cluster.client)
    backend.unpublish("sentiment")
    poll(
        lambda: not set(first["keys"]) & actor_keys_on_workers(process_cluster.client),
        20,
        what="unpublished actors to be released",
    )
    with pytest.raises(CaikitCoreException) as caught:
        backend.attach("sentiment")
    assert caught.value.status_code is CaikitCoreStatusCode.NOT_FOUND


def test_publishing_proxy_unpublishes_on_close(local_cluster, connection, trained_model_dir):
    initializer = DaskModelInitializer({"connection": connection}, "publisher")
    model = initializer.init(ModuleConfig.load(trained_model_dir))
    model.publish("to-close")
    attached = DaskBackend({"connection": connection}).attach("to-close")
    assert attached.run("fine").label == TextClassifier.load(trained_model_dir).run("fine").label
    model.close()
    with pytest.raises(CaikitCoreException):
        DaskBackend({"connection": connection}).attach("to-close")
    attached.close()
