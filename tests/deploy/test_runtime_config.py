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
    assert runtime["library"] == "caikit_dask.example"
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
        "caikit_dask.example",
        8085,
        8080,
    ]
