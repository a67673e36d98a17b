"""Garbage config fails at construction, naming the key and the fix."""

import pytest

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.config import BackendConfig, ConnectionConfig
from caikit_dask.errors import DaskConfigError

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
    ({"call_timeout": "-5s"}, "call_timeout"),
    ({"module_resources": {"m": {"GPU": "x"}}}, "module_resources.m.GPU"),
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
