"""The direct call port of a TLS cluster: TLS with the cluster's CA and client certificates
required, as the workers' own Dask port; every other peer is refused and logged once."""

from __future__ import annotations

import contextlib
import socket
import ssl

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll
from dask_testlib import save_fault_model
from distributed import Security
from reliability_support import TLSProcessCluster, make_tls_files

from caikit_dask import DaskModelInitializer
from caikit_dask.connection import DaskConnection
from caikit_dask.loading.proxy import replica_set_of
from caikit_dask.loading.wire import framing
from caikit_dask.loading.wire.direct_channel import DirectChannel
from caikit_dask.loading.wire.protocol import decode_outcome, encode_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tls):
    cluster = TLSProcessCluster(tmp_path_factory.mktemp("tls-direct"), tls)
    try:
        cluster.add_worker("direct-a")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def model(cluster, tls, tmp_path_factory):
    connection = {"address": cluster.address, "security": tls.security(), "timeout": "20s"}
    path = save_fault_model(str(tmp_path_factory.mktemp("model") / "fault"))
    settings = {"connection": connection, "direct_calls": "auto"}  # whatever the default
    loaded = DaskModelInitializer(settings, "tls-direct").init(ModuleConfig.load(path))
    yield loaded
    loaded.close()
    DaskConnection.from_config(connection).close()


def _call_over(model, wrap) -> object:
    """One RUN frame over a connection ``wrap`` makes of a plain socket: the answer's outcome,
    or the exception that ended the connection (the refusal)."""
    channel = replica_set_of(model).replicas[0].channel
    host, port = channel.address.split("://")[1].rsplit(":", 1)
    request = encode_request("run", ("x",), {}, None)
    try:
        with contextlib.closing(socket.create_connection((host, int(port)), timeout=10)) as raw:
            sock = wrap(raw)
            sock.sendall(framing.frame(framing.RUN, 1, channel.token + request))
            header = framing.read_exactly(sock, framing.HEADER.size)
            _, length, _ = framing.parse_header(header, frozenset({framing.OUTCOME}))
            return decode_outcome(framing.read_exactly(sock, length))
    except (OSError, ssl.SSLError) as err:
        return err


def _client_context(**security) -> ssl.SSLContext:
    return Security(**security).get_connection_args("client")["ssl_context"]


def test_calls_take_the_direct_path_over_tls(model):
    channel = replica_set_of(model).replicas[0].channel
    assert isinstance(channel, DirectChannel)
    assert channel.address.startswith("tls://127.0.0.1:")
    assert model.run("over tls").label


def test_the_clusters_certificate_is_accepted(model, tls):
    context = _client_context(
        tls_ca_file=str(tls.ca_file), tls_client_cert=str(tls.cert), tls_client_key=str(tls.key)
    )
    assert _call_over(model, context.wrap_socket).label


def test_plain_tcp_is_refused(model):
    assert isinstance(_call_over(model, lambda sock: sock), (OSError, ssl.SSLError))


def test_tls_without_a_client_certificate_is_refused(model, tls):
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.check_hostname = False
    assert isinstance(_call_over(model, context.wrap_socket), (OSError, ssl.SSLError))


def test_a_certificate_from_another_ca_is_refused(model, tmp_path):
    other = make_tls_files(tmp_path / "other", name="other")
    context = _client_context(
        tls_ca_file=str(other.ca_file),
        tls_client_cert=str(other.cert),
        tls_client_key=str(other.key),
    )
    assert isinstance(_call_over(model, context.wrap_socket), (OSError, ssl.SSLError))


def test_refusals_are_logged_once_and_the_port_keeps_serving(model, cluster, tls):
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.check_hostname = False
    for _ in range(3):
        _call_over(model, context.wrap_socket)
    assert model.run("still served").label

    def refusals():  # the refusal warning's log code (the tests above were refused too)
        return cluster.logs().count("<DSK50000031W>")

    poll(lambda: refusals() >= 1, 10, what="the refusal in the worker's log")
    assert refusals() == 1, cluster.logs()[-3000:]
    assert "TLS handshake failed" in cluster.logs()
