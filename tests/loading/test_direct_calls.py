"""The direct call path: on by default, the same answers as the actor RPC, a listener that
survives bad peers, one warning when it cannot be used, and ``direct_calls: off``."""

from __future__ import annotations

import logging
import pickle
import socket
import struct

import dask.config
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll, run_in_threads
from dask_testlib import save_fault_model
from distributed import LocalCluster

from caikit_dask import DaskModelInitializer
from caikit_dask.loading.proxy import replica_set_of
from caikit_dask.loading.wire import framing
from caikit_dask.loading.wire.channel import ActorChannel
from caikit_dask.loading.wire.direct_channel import DirectChannel
from caikit_dask.loading.wire.protocol import encode_request


def _load(connection, path, name="direct", **config):
    config.setdefault("direct_calls", "auto")  # whatever the dask config's default
    return DaskModelInitializer({"connection": connection, **config}, name).init(
        ModuleConfig.load(path)
    )


@pytest.fixture(scope="module")
def fault_path(tmp_path_factory):
    return save_fault_model(str(tmp_path_factory.mktemp("direct") / "fault"))


@pytest.fixture
def model(connection, fault_path):
    loaded = _load(connection, fault_path, direct_calls="auto")
    yield loaded
    loaded.close()


@pytest.fixture
def classifier(connection, trained_model_dir):
    loaded = _load(connection, trained_model_dir, "direct-classifier")
    yield loaded
    loaded.close()


def _channel(model):
    return replica_set_of(model).replicas[0].channel


def _raw(channel, timeout=10.0):
    host, port = channel.address.split("://")[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def _read_answer(sock):
    header = framing.read_exactly(sock, framing.HEADER.size)
    kind, length, request_id = framing.parse_header(
        header, frozenset({framing.OUTCOME, framing.GONE})
    )
    return kind, request_id, framing.read_exactly(sock, length)


def _closed_by_peer(sock):
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_calls_take_the_direct_path_by_default(model):
    channel = _channel(model)
    assert isinstance(channel, DirectChannel)
    assert channel.address.startswith("tcp://127.0.0.1:")
    assert model.run("hello").label
    with pytest.raises(KeyError, match="boom"):
        model.run("raise:boom")
    pid = model.run("hello").label
    outcomes = run_in_threads(lambda i: model.run(f"t{i}").label, 16)
    assert [label for label, _ in outcomes] == [pid] * 16


def test_streams_cross_the_direct_path(classifier, trained_model_dir):
    from caikit_dask.example import TextClassifier

    assert isinstance(_channel(classifier), DirectChannel)
    text = " ".join(f"word{i}" for i in range(40))
    local = TextClassifier.load(trained_model_dir)
    assert list(classifier.run_stream(text, unit="word")) == list(local.run_stream(text, "word"))
    with pytest.raises(Exception, match="unit must be one of"):
        list(classifier.run_stream(text, unit="nonsense"))


def test_direct_calls_off_is_the_actor_rpc(connection, fault_path):
    model = _load(connection, fault_path, "off", direct_calls="off")
    try:
        assert type(_channel(model)) is ActorChannel
        assert model.run("over dask").label
    finally:
        model.close()


def test_models_of_a_worker_process_share_its_listener_and_connection(
    model, connection, fault_path
):
    other = _load(connection, fault_path, "second", replicas=2)  # one on each worker
    try:
        mine = [r.channel for r in replica_set_of(model).replicas]
        theirs = {r.worker: r.channel for r in replica_set_of(other).replicas}
        for channel in mine:
            assert theirs[channel.worker].address == channel.address
            assert theirs[channel.worker].token != channel.token
            assert theirs[channel.worker]._connection is channel._connection
        assert other.run("x").label and model.run("y").label
    finally:
        other.close()


def test_a_garbage_frame_closes_that_connection_only(model):
    channel = _channel(model)
    with _raw(channel) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _closed_by_peer(sock)
    assert model.run("still served").label


def test_an_oversized_frame_closes_that_connection_only(model):
    channel = _channel(model)
    with _raw(channel) as sock:
        too_big = framing.MAX_FRAME + 1
        sock.sendall(framing.HEADER.pack(framing.MAGIC, framing.RUN, too_big, 1))
        assert _closed_by_peer(sock)
    assert model.run("still served").label


def test_an_unknown_actor_token_is_answered_gone(model):
    channel = _channel(model)
    request = encode_request("run", ("x",), {}, None)
    with _raw(channel) as sock:
        sock.sendall(framing.frame(framing.RUN, 7, b"\0" * framing.TOKEN_SIZE + request))
        kind, request_id, body = _read_answer(sock)
        assert (kind, request_id) == (framing.GONE, 7) and b"gone" in body
        sock.sendall(framing.frame(framing.RUN, 8, channel.token + request))
        kind, request_id, _ = _read_answer(sock)
        assert (kind, request_id) == (framing.OUTCOME, 8)


def test_a_caller_gone_mid_stream_leaves_no_stream_behind(classifier):
    channel = _channel(classifier)
    actor = replica_set_of(classifier).replicas[0].actor
    text = " ".join(f"word{i}" for i in range(40))
    request = encode_request("run_stream", (text, "word"), {}, None)
    with _raw(channel) as sock:
        body = channel.token + pickle.dumps((request, 1))
        sock.sendall(framing.frame(framing.OPEN_STREAM, 1, body))
        kind, _, outcome = _read_answer(sock)
        assert kind == framing.OUTCOME
        ok, (stream_id, items, ended) = pickle.loads(outcome)
        assert ok and not ended
        assert actor.has_stream(stream_id).result(timeout=10)
    poll(lambda: not actor.has_stream(stream_id).result(timeout=10), 10, what="stream closed")


def test_a_bad_call_port_setting_is_named():
    from caikit_dask.loading.actor.call_listener import _configured_port

    with (
        dask.config.set({"caikit_dask.call-port": "http"}),
        pytest.raises(ValueError, match=r"caikit_dask.call-port.*DASK_CAIKIT_DASK__CALL_PORT"),
    ):
        _configured_port()


def test_a_bad_direct_calls_value_is_named(connection, fault_path):
    from caikit_dask.errors import DaskConfigError

    with pytest.raises(DaskConfigError, match="direct_calls"):
        _load(connection, fault_path, direct_calls="sometimes")


@pytest.fixture
def busy_port():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        yield busy.getsockname()[1]


@pytest.mark.slow
def test_a_worker_that_cannot_listen_falls_back_with_one_warning(busy_port, fault_path, caplog):
    """Both workers are told a port already taken: calls take the actor RPC, one warning
    per worker says why, and the calls work."""
    with dask.config.set({"caikit_dask.call-port": busy_port}):
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
    try:
        caplog.set_level(logging.WARNING)
        connection = {"address": cluster.scheduler_address}
        first = _load(connection, fault_path, "fallback-1")
        second = _load(connection, fault_path, "fallback-2")
        try:
            assert type(_channel(first)) is ActorChannel
            assert first.run("fallback").label
            assert second.run("again").label
            warnings = [r for r in caplog.records if "not the direct path" in r.getMessage()]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "Address already in use" in warnings[0].getMessage() or "in use" in (
                warnings[0].getMessage()
            )
        finally:
            first.close()
            second.close()
    finally:
        cluster.close()


@pytest.mark.slow
def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def _cluster_on_call_port(port: int) -> LocalCluster:
    """One worker process whose models take direct calls on ``port``."""
    with dask.config.set({"caikit_dask.call-port": port}):
        return LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )


def test_a_fixed_call_port_is_used(fault_path):
    port = _free_port()
    cluster = _cluster_on_call_port(port)
    try:
        model = _load({"address": cluster.scheduler_address}, fault_path, "fixed")
        try:
            assert _channel(model).address == f"tcp://127.0.0.1:{port}"
            assert model.run("fixed").label
        finally:
            model.close()
    finally:
        cluster.close()


@pytest.mark.slow
def test_a_new_worker_on_a_reused_call_port_gets_a_new_connection(fault_path):
    """The caller's pooled connection to a worker that ended is not the next one's."""
    port = _free_port()
    labels = []
    for round_ in ("first", "second"):
        cluster = _cluster_on_call_port(port)
        try:
            model = _load({"address": cluster.scheduler_address}, fault_path, f"reused-{round_}")
            try:
                assert _channel(model).address == f"tcp://127.0.0.1:{port}"
                labels.append(model.run(round_).label)
            finally:
                model.close()
        finally:
            cluster.close()  # its worker ends; the caller has not read from it since
    assert len(labels) == 2 and labels[0] != labels[1]  # two worker processes answered


def test_frames_header_is_what_both_ends_read():
    assert framing.HEADER.size == struct.calcsize("!2sBIQ")
    with pytest.raises(framing.FrameError, match="not a caikit-dask"):
        framing.parse_header(b"XX" + bytes(13), framing.REQUESTS)


def test_a_caller_gone_leaves_no_queued_call_behind(model):
    """Calls queued behind busy threads are dropped when their caller's connection goes."""
    import time

    channel = _channel(model)
    request = encode_request("run", ("sleep:2",), {}, None)
    with _raw(channel) as sock:
        for request_id in range(20):  # 4 run at once; 16 wait in the actor's queue
            sock.sendall(framing.frame(framing.RUN, request_id, channel.token + request))
        actor = replica_set_of(model).replicas[0].actor
        poll(lambda: actor.ping().result(timeout=10)["calls"] >= 20, 10, what="the calls")
    started = time.monotonic()
    assert model.run("after").label
    took = time.monotonic() - started
    assert took < 6, f"{took:.1f} s: the gone caller's queued calls still ran (10 s of them)"


def test_a_call_past_call_timeout_is_forgotten_by_its_connection(connection, fault_path):
    model = _load(connection, fault_path, "timeout", call_timeout="1s")
    try:
        model.run("open")
        connection = _channel(model)._connection  # shared: other tests' calls may be on it
        before = set(connection._pending)
        with pytest.raises(TimeoutError, match="call_timeout"):
            model.run("sleep:3")
        assert set(connection._pending) <= before  # its late answer will be dropped
        assert model.run("after").label
    finally:
        model.close()
