"""Garbage config fails at construction, naming the key and the fix."""

import re
import ssl
from pathlib import Path

import pytest
from distributed.security import Security

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.config import BackendConfig, ConnectionConfig
from caikit_dask.errors import DaskConfigError


def kube_groups(groups):
    """A KubeCluster connection with these worker_groups (not built: only read)."""
    kwargs = {"name": "c", "worker_groups": groups}
    cluster = {"class": "dask_kubernetes.operator.KubeCluster", "kwargs": kwargs}
    return {"connection": {"cluster": cluster}}


BAD_CONFIGS = [
    ({"conection": {}}, "conection: unknown key"),
    ({"connection": {"adress": "tcp://h:1"}}, "connection.adress: unknown key"),
    ({"connection": {"address": "not an address"}}, "connection.address"),
    ({"connection": {"address": "tcp://hostonly"}}, "no host:port"),
    ({"connection": {"address": "bogus://h:1"}}, "unknown protocol 'bogus'"),
    ({"connection": {"address": 8786}}, "expected str"),
    ({"connection": {"address": "tcp://h:1", "scheduler_file": "/x"}}, "both set"),
    ({"connection": {"timeout": "soon"}}, "connection.timeout"),
    ({"connection": {"use_current_client": "yes"}}, "expected bool"),
    ({"connection": {"cluster": {"class": "NoDots"}}}, "not an import path"),
    ({"connection": {"cluster": {"class": "a.B", "kwargz": {}}}}, "cluster.kwargz"),
    ({"connection": {"security": {"tls_ca": "x"}}}, "security.tls_ca"),
    ({"resources": {"GPU": "one"}}, "resources.GPU"),
    ({"resources": {"GPU": -1}}, "resources.GPU"),
    ({"retries": -1}, "retries"),
    ({"retries": True}, "expected int"),
    ({"replicas": 0}, "replicas"),
    ({"log_lines": 0}, "log_lines: 0 is less than 1"),
    ({"max_queued_calls": -1}, "max_queued_calls: -1 is negative"),
    ({"health_check_timeout": 0}, "health_check_timeout: 0 is zero"),
    ({"health_check_timeout": "soon"}, "health_check_timeout: 'soon' is not a duration"),
    ({"max_queued_calls": "10"}, "max_queued_calls: expected int"),
    ({"call_timeout": "-5s"}, "call_timeout"),
    ({"module_resources": {"m": {"GPU": "x"}}}, "module_resources.m.GPU"),
    ({"connection": {"security": {"tls_min_version": 1.1}}}, "tls_min_version: 1.1 is not a TLS"),
    ({"connection": {"security": {"tls_ciphers": 5}}}, "security.tls_ciphers: expected str"),
    (kube_groups({"gpu": {"gpus": 1}}), "worker_groups.gpu.gpus: unknown key"),
    (kube_groups({"gpu": {"n_workers": "2"}}), "worker_groups.gpu.n_workers"),
    (kube_groups({"gpu": {"resources": {"GPU": 0.5}}}), "worker_groups.gpu.resources.GPU"),
    (kube_groups({"gpu": {"resources": {"GPU": "one"}}}), "worker_groups.gpu.resources.GPU"),
    (kube_groups({"gpu": {"k8s_resources": {"request": {}}}}), "gpu.k8s_resources.request"),
    (kube_groups(["gpu"]), "worker_groups: expected a mapping"),
    ({"autoscaling": {"max_replicas": 2}, "replicas": 2}, "replicas and autoscaling are both set"),
    ({"autoscaling": {}}, "autoscaling.max_replicas: missing"),
    ({"autoscaling": {"max_replicas": 1, "min_replicas": 2}}, "less than min_replicas=2"),
    ({"autoscaling": {"max_replicas": 2, "min_replicas": -1}}, "min_replicas: -1 is negative"),
    ({"autoscaling": {"max_replicas": 2, "target_ongoing_requests": 0}}, "not positive"),
    ({"autoscaling": {"max_replicas": 2, "upscale_delay": "soon"}}, "upscale_delay"),
    ({"autoscaling": {"max_replica": 2}}, "autoscaling.max_replica: unknown key"),
    ({"autoscaling": 4}, "autoscaling: expected a mapping"),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS)
def test_bad_config_names_the_key(config, message):
    with pytest.raises(DaskConfigError, match=message.replace("(", r"\(")):
        BackendConfig.from_mapping(config)


def test_trainer_and_initializer_accept_only_their_keys():
    with pytest.raises(DaskConfigError, match="trainers.t.config.replicas: unknown key"):
        DaskModelTrainer({"replicas": 2}, "t")
    with pytest.raises(DaskConfigError, match="initializers.i.config.retries: unknown key"):
        DaskModelInitializer({"retries": 2}, "i")


def test_max_queued_calls_is_unlimited_by_default_and_for_initializers_only():
    assert BackendConfig.from_mapping({}).max_queued_calls is None
    assert BackendConfig.from_mapping({"max_queued_calls": 0}).max_queued_calls == 0
    with pytest.raises(DaskConfigError, match="trainers.t.config.max_queued_calls: unknown key"):
        DaskModelTrainer({"max_queued_calls": 2}, "t")


def test_autoscaling_takes_ray_serves_defaults_and_is_for_initializers_only():
    scaling = BackendConfig.from_mapping({"autoscaling": {"max_replicas": 4}}).autoscaling
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 4)
    assert scaling.target_ongoing_requests == 2
    assert (scaling.upscale_delay, scaling.downscale_delay) == (30, 600)
    assert BackendConfig.from_mapping({}).autoscaling is None
    with pytest.raises(DaskConfigError, match="trainers.t.config.autoscaling: unknown key"):
        DaskModelTrainer({"autoscaling": {"max_replicas": 2}}, "t")


def test_construction_does_not_connect():
    DaskModelTrainer({"connection": {"address": "tcp://127.0.0.1:1"}}, "lazy")
    backend = DaskBackend({"connection": {"address": "tcp://127.0.0.1:1"}})
    assert not backend.connection.is_open


def test_durations_and_retention():
    config = BackendConfig.from_mapping(
        {"retention_duration": "1d2h", "resource_timeout": "2m", "call_timeout": 5}
    )
    assert config.retention_duration.total_seconds() == 26 * 3600
    assert config.resource_timeout == 120
    assert config.call_timeout == 5


def test_caikit_local_defaults_merged_into_default_are_ignored():
    config = BackendConfig.from_mapping(
        {"use_subprocess": False, "backend_priority": [{"type": "LOCAL"}]}
    )
    assert config.replicas == 1


def test_equal_mappings_share_a_key():
    first = ConnectionConfig.from_mapping({"address": "tcp://h:1", "timeout": "30s"})
    second = ConnectionConfig.from_mapping({"timeout": 30, "address": "tcp://h:1"})
    assert first.sharing_key() == second.sharing_key()


def test_max_payload_size_parses_dask_sizes():
    assert BackendConfig.from_mapping({"max_payload_size": "1MiB"}).max_payload_size == 2**20
    assert BackendConfig.from_mapping({}).max_payload_size is None
    with pytest.raises(DaskConfigError, match="max_payload_size"):
        BackendConfig.from_mapping({"max_payload_size": "lots"})


def test_trainer_parses_its_config_once():
    trainer = DaskModelTrainer({"retention_duration": "1h"}, "once")
    assert trainer.settings is trainer.backend.settings


def test_security_takes_what_dask_security_takes():
    with pytest.raises(DaskConfigError) as caught:
        ConnectionConfig.from_mapping({"security": {"tls_cipher": "x"}})
    assert all(key in str(caught.value) for key in Security.__slots__)
    config = ConnectionConfig.from_mapping(
        {"security": {"tls_min_version": 1.2, "tls_max_version": "1.3", "tls_ciphers": "ECDHE"}}
    )
    assert config.security == {
        "tls_min_version": ssl.TLSVersion.TLSv1_2,
        "tls_max_version": ssl.TLSVersion.TLSv1_3,
        "tls_ciphers": "ECDHE",
    }


def test_valid_worker_groups_are_accepted_at_construction():
    groups = {"gpu": {"n_workers": 1, "resources": {"GPU": 1}, "k8s_resources": {"limits": {}}}}
    config = BackendConfig.from_mapping(kube_groups(groups))
    assert config.connection.cluster.kwargs["worker_groups"] == groups


def test_readme_config_table_matches_the_declarations():
    """Every backend key is in the configuration page's table, saying which adapters take it."""
    readme = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)[^`]*` \| (both|trainer|initializer) \|", readme, re.M))
    for key in BackendConfig.BACKEND_KEYS:
        trainer = key in BackendConfig.TRAINER_KEYS
        initializer = key in BackendConfig.INITIALIZER_KEYS
        where = "both" if trainer and initializer else "trainer" if trainer else "initializer"
        said = rows.get(key)
        assert said == where, f"docs/configuration.md says {key} is for {said}, not {where}"


def test_public_exception_types_import_from_errors():
    from caikit_dask import errors
    from caikit_dask.prediction_jobs import on_worker as job_on_worker
    from caikit_dask.training import by_value, on_worker

    assert errors.PredictionCanceled is job_on_worker.PredictionCanceled
    assert errors.TrainingCanceled is on_worker.TrainingCanceled
    assert errors.TrainingResultLost is on_worker.TrainingResultLost
    assert errors.ByValueError is by_value.ByValueError
    with pytest.raises(AttributeError):
        errors.NoSuchError  # noqa: B018
