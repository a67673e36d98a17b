"""caikit.train and caikit.load use DASK by configuration alone (in a fresh process)."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    import caikit
    address, registration = sys.argv[1], sys.argv[2]
    dask_config = {"connection": {"address": address}}
    if registration == "import_class":
        trainer = {"type": "DASK", "import_class": "caikit_dask.DaskModelTrainer"}
        initializer = {"type": "DASK", "import_class": "caikit_dask.DaskModelInitializer"}
    else:
        import caikit_dask  # registers type DASK
        trainer, initializer = {"type": "DASK"}, {"type": "DASK"}
    caikit.configure(config_dict={"model_management": {
        "trainers": {"default": {**trainer, "config": dask_config}},
        "initializers": {"default": {**initializer, "config": dask_config}},
    }})
    from caikit_dask.example import TextClassifier
    out = tempfile.mkdtemp()
    future = caikit.train(TextClassifier, epochs=20, save_path=out, wait=True)
    model = caikit.load(future.save_path)
    print(json.dumps({
        "trainer": type(future).__name__,
        "status": future.get_info().status.name,
        "model": type(model).__name__,
        "label": model.run("What a lovely day").label,
        "local": TextClassifier.load(future.save_path).run("What a lovely day").label,
    }))
    model.close()
    """
)


@pytest.mark.parametrize("registration", ["type", "import_class"])
def test_train_and_load_through_caikit_config(local_cluster, registration):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, local_cluster.scheduler_address, registration],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["trainer"] == "DaskModelTrainFuture"
    assert seen["status"] == "COMPLETED"
    assert seen["model"] == "DaskTextClassifier"
    assert seen["label"] == seen["local"]
