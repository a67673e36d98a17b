"""The runtime ConfigMap: valid caikit config wiring the DASK trainer and initializer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from deploy_support import REPO_ROOT, load_runtime_config
from distributed.comm.addressing import parse_address


def test_config_has_the_dask_trainer_and_initializer(runtime_config):
    management = runtime_config["model_management"]
    trainer = management["trainers"]["default"]
    initializer = management["initializers"]["default"]
    assert trainer["type"] == "DASK"
    assert initializer["type"] == "DASK"
    assert trainer["config"]["resources"] == {"GPU": 1}
    assert initializer["config"]["replicas"] == 1
    # One mapping in both places, so trainer and initializer share one Dask client.
    assert trainer["config"]["connection"] == initializer["config"]["connection"]
    address = trainer["config"]["connection"]["address"]
    scheme, location = parse_address(address, strict=True)
    assert scheme == "tcp" and location.endswith(":8786")


def test_config_serves_the_example_library_on_the_standard_ports(runtime_config):
    runtime = runtime_config["runtime"]
    # Top level: caikit.runtime rejects dotted libraries such as caikit_dask.example.
    assert runtime["library"] == "caikit_dask"
    assert runtime["grpc"] == {"enabled": True, "port": 8085}
    assert runtime["http"] == {"enabled": True, "port": 8080}


def test_caikit_merges_the_config():
    """caikit's own config loader accepts the file on top of its defaults (fresh process)."""
    code = textwrap.dedent(
        """
        import json, sys
        import caikit
        caikit.configure(config_dict=json.loads(sys.stdin.read()))
        config = caikit.get_config()
        trainer = config.model_management.trainers.default
        initializer = config.model_management.initializers.default
        print(json.dumps([
            trainer.type, initializer.type, trainer.config.connection.address,
            config.runtime.library, config.runtime.grpc.port, config.runtime.http.port,
        ]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(load_runtime_config()),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    merged = json.loads(result.stdout.strip().splitlines()[-1])
    address = load_runtime_config()["model_management"]["trainers"]["default"]["config"]
    assert merged == [
        "DASK",
        "DASK",
        address["connection"]["address"],
        "caikit_dask",
        8085,
        8080,
    ]


CONSTRUCT = textwrap.dedent(
    """
    import importlib, json, sys
    import caikit
    from caikit.core.model_management import model_initializer_factory, model_trainer_factory

    caikit.configure(config_dict=json.loads(sys.stdin.read()))
    config = caikit.get_config()
    importlib.import_module(config.runtime.library)  # what caikit.runtime does first
    from caikit_dask import DaskModelInitializer, DaskModelTrainer
    from caikit_dask.connection import DaskConnection

    management = config.model_management
    trainer = model_trainer_factory.construct(management.trainers.default, "default")
    initializer = model_initializer_factory.construct(management.initializers.default, "default")
    backends = [trainer.backend, initializer.backend]
    print(json.dumps({
        "trainer": type(trainer).__name__,
        "initializer": type(initializer).__name__,
        "is_trainer": isinstance(trainer, DaskModelTrainer),
        "is_initializer": isinstance(initializer, DaskModelInitializer),
        "address": [b.settings.connection.address for b in backends],
        "one_connection": backends[0].connection is backends[1].connection,
        "trainer_resources": dict(trainer.settings.resources),
        "replicas": initializer.backend.settings.replicas,
        "connected": [b._started or b.connection._client is not None for b in backends],
        "open_connections": sum(c._client is not None for c in DaskConnection._shared.values()),
    }))
    """
)


def test_configmap_constructs_the_dask_trainer_and_initializer(runtime_config):
    """caikit's factories build the real DaskModelTrainer / DaskModelInitializer from the
    ConfigMap (after caikit merged its LOCAL defaults into ``default``, as in the runtime).
    Construction validates the config and does not connect: the scheduler's name does not
    even resolve here."""
    result = subprocess.run(
        [sys.executable, "-c", CONSTRUCT],
        input=json.dumps(runtime_config),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    built = json.loads(result.stdout.strip().splitlines()[-1])
    address = runtime_config["model_management"]["trainers"]["default"]["config"]["connection"]
    assert built == {
        "trainer": "DaskModelTrainer",
        "initializer": "DaskModelInitializer",
        "is_trainer": True,
        "is_initializer": True,
        "address": [address["address"]] * 2,
        "one_connection": True,
        "trainer_resources": {"GPU": 1},
        "replicas": 1,
        "connected": [False, False],
        "open_connections": 0,
    }
