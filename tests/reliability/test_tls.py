"""The whole path over TLS: mutual TLS with a throwaway CA, refusal of clients without a
certificate, and certificates that never reach logs, reprs or error messages.

The scheduler and workers are ``dask scheduler --protocol tls`` / ``dask worker tls://...``
processes on 127.0.0.1 holding a certificate for 127.0.0.1 / localhost signed by a CA made
here with ``cryptography``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.modules import ModuleConfig
from cluster_support import actor_keys_on_workers, poll, run_in_threads, worker_env
from dask_testlib import FaultModule, save_fault_model
from reliability_support import TLSProcessCluster, call_within, make_tls_files

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.config import ConnectionConfig
from caikit_dask.connection import DaskConnection
from caikit_dask.errors import DaskConfigError
from caikit_dask.example import ClassificationResult, TextClassifier

pytestmark = pytest.mark.slow

CONNECT_TIMEOUT = 5.0  # connection.timeout of the refused clients
REFUSAL_BOUND = CONNECT_TIMEOUT + 10.0  # every refusal is raised within this


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, tls):
    cluster = TLSProcessCluster(tmp_path_factory.mktemp("tls-cluster"), tls)
    try:
        cluster.add_worker("tls-a", resources="GPU=1")
        cluster.add_worker("tls-b", resources="GPU=1")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def tls_connection(tls_cluster, tls):
    mapping = {"address": tls_cluster.address, "security": tls.security(), "timeout": "20s"}
    yield mapping
    DaskConnection.from_config(mapping).close()


@pytest.fixture
def all_logs(caplog):
    """caplog at DEBUG, including Dask's loggers (which do not propagate to the root)."""
    caplog.set_level(logging.DEBUG)
    detached = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in detached:
        logger.addHandler(caplog.handler)
    yield caplog
    for logger in detached:
        logger.removeHandler(caplog.handler)


def assert_no_secrets(text: str, tls) -> None:
    assert "-----BEGIN" not in text, "PEM text reached the output"
    assert "PRIVATE KEY" not in text
    leaked = [line for line in tls.secrets() if line in text]
    assert not leaked, f"certificate/key contents reached the output: {leaked[:1]}"


# -- the whole path --------------------------------------------------------------------------


def test_scheduler_and_workers_speak_tls_only(tls_cluster):
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    workers = tls_cluster.worker_names()
    assert set(workers) == {"tls-a", "tls-b"}
    assert all(address.startswith("tls://127.0.0.1:") for address in workers.values())


def test_train_load_init_run_over_tls(tls_connection, tls_cluster, tls, tmp_path, all_logs):
    trainer = DaskModelTrainer({"connection": tls_connection, "resources": {"GPU": 1}}, "tls")
    future = call_within(
        60, trainer.train, TextClassifier, epochs=20, save_path=str(tmp_path), model_name="tls"
    )
    call_within(120, future.wait, 110)
    assert future.get_info().status is JobStatus.COMPLETED, future.get_info().errors
    assert trainer.backend.client.scheduler.address == tls_cluster.address

    # The trained model comes back over TLS (shipped as its archive) ...
    trained = call_within(60, future.load)
    assert isinstance(trained, TextClassifier)
    # ... and the same training is found by id through the TLS scheduler.
    assert trainer.get_model_future(future.id).get_info().status is JobStatus.COMPLETED

    initializer = DaskModelInitializer(
        {"connection": tls_connection, "replicas": 2, "call_timeout": "30s"}, "tls"
    )
    assert initializer.backend.client is trainer.backend.client  # one client per mapping
    proxy = call_within(60, initializer.init, ModuleConfig.load(future.save_path))
    try:
        assert len({r["worker"] for r in proxy.replicas}) == 2
        assert all(r["worker"].startswith("tls://") for r in proxy.replicas)
        for text in ["What a lovely day", "This is terrible"]:
            remote = call_within(30, proxy.run, text)
            assert isinstance(remote, ClassificationResult)
            assert remote.to_dict() == trained.run(text).to_dict()
        streamed = call_within(30, lambda: list(proxy.run_stream("Great. Awful. Fine.")))
        assert [item.to_dict() for item in streamed] == [
            item.to_dict() for item in trained.run_stream("Great. Awful. Fine.")
        ]
        keys = {r["key"] for r in proxy.replicas}
    finally:
        proxy.close()
    poll(
        lambda: not keys & actor_keys_on_workers(tls_cluster.client),
        20,
        what="the TLS actors to be released",
    )

    assert_no_secrets(all_logs.text, tls)
    assert_no_secrets(tls_cluster.logs(), tls)


def test_concurrent_calls_over_tls(tls_connection, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    proxy = DaskModelInitializer(
        {"connection": tls_connection, "replicas": 2, "call_timeout": "30s"}, "tls-load"
    ).init(ModuleConfig.load(path))
    started = time.monotonic()
    outcomes = run_in_threads(lambda _: {proxy.run("x").label for _ in range(50)}, 8)
    elapsed = time.monotonic() - started
    proxy.close()
    print(f"\n[tls] 400 calls from 8 threads over 2 TLS replicas: {400 / elapsed:.0f} calls/s")
    assert all(outcome is not None for outcome in outcomes), "a call over TLS hung"
    values = [value for value, _ in outcomes]
    errors = [value for value in values if isinstance(value, BaseException)]
    pids = set().union(*(value for value in values if isinstance(value, set)))
    assert errors == []
    assert len(pids) == 2


# -- security settings as written in config ------------------------------------------------

SECURITY_AS_WRITTEN = {
    "tls_min_version 1.2": ({"tls_min_version": 1.2}, "tls_min_version", ssl.TLSVersion.TLSv1_2),
    "tls_max_version '1.3'": (
        {"tls_max_version": "1.3"},
        "tls_max_version",
        ssl.TLSVersion.TLSv1_3,
    ),
    "tls_ciphers": ({"tls_ciphers": "ECDHE+AESGCM"}, "tls_ciphers", "ECDHE+AESGCM"),
}


@pytest.mark.parametrize("case", SECURITY_AS_WRITTEN)
def test_security_settings_as_written_in_config_connect(case, tls_cluster, tls):
    """TLS versions spelled 1.2 / "1.3" and ``tls_ciphers`` reach Dask's Security and
    the client connects with them."""
    overrides, key, expected = SECURITY_AS_WRITTEN[case]
    mapping = {"address": tls_cluster.address, "security": tls.security(**overrides)}
    backend = DaskBackend({"connection": {**mapping, "timeout": "20s"}})
    try:
        client = call_within(30, lambda: backend.client)
        assert call_within(30, client.submit(sum, [1, 2]).result, 20) == 3
        assert getattr(client.security, key) == expected
    finally:
        backend.connection.close()


# -- refused clients -------------------------------------------------------------------------

REFUSALS = [
    "no security at all",
    "CA but no client certificate",
    "certificate from another CA",
    "plain tcp to the TLS port",
]


@pytest.fixture(scope="module")
def refusals(tls_cluster, tls, tmp_path_factory):
    """Each refused connection, then a correct one, in a subprocess (see refusal_probe.py).

    Returns the probe's report per case and everything it logged.
    """
    other_ca = make_tls_files(tmp_path_factory.mktemp("other-ca"), name="other")
    address = tls_cluster.address
    refused = {
        "no security at all": {"address": address},
        "CA but no client certificate": {
            "address": address,
            "security": {"tls_ca_file": str(tls.ca_file), "require_encryption": True},
        },
        "certificate from another CA": {"address": address, "security": other_ca.security()},
        "plain tcp to the TLS port": {"address": address.replace("tls://", "tcp://")},
        **{
            case: {"address": address, "security": tls.security(**{key: value})}
            for case, (key, value) in MISCONFIGURED.items()
        },
    }
    spec = {
        "refused": {
            case: {"connection": {**mapping, "timeout": f"{CONNECT_TIMEOUT:g}s"}}
            for case, mapping in refused.items()
        },
        "good": {"connection": {"address": address, "security": tls.security()}},
        "bound": REFUSAL_BOUND,
    }
    reports, logs = run_probe(spec, timeout=len(refused) * REFUSAL_BOUND + 60)
    return {"reports": reports, "logs": logs, "addresses": refused, "other_ca": other_ca}


def run_probe(spec: dict, timeout: float) -> tuple[dict[str, dict], str]:
    env = worker_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "refusal_probe.py")],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            stdout, _ = process.communicate(json.dumps(spec), timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()  # a hang is reported per case below, as a missing report
            stdout, _ = process.communicate()
        stderr.seek(0)
        logs = stderr.read().decode(errors="replace")
    reports = {}
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            report = json.loads(line)
            reports[report["case"]] = report
    return reports, logs


MISSING = "/nonexistent/caikit-dask-test/client-key.pem"
MISCONFIGURED = {
    "client key file missing": ("tls_client_key", MISSING),
    "unsupported tls_min_version": ("tls_min_version", 1.1),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_client_without_the_right_certificate_is_refused_clearly(case, refusals, tls):
    """Refused at the call, as DaskBackendError naming the scheduler, within the timeout."""
    report = refusals["reports"].get(case)
    assert report is not None, f"no report on {case} (probe hung?): {refusals['logs'][-3000:]}"
    assert report["raised"] == "DaskBackendError", report
    assert report["elapsed"] < REFUSAL_BOUND, report
    address = refusals["addresses"][case]["address"]
    assert address in report["message"], report["message"]
    assert "connection.security" in report["message"], report["message"]
    assert_no_secrets(report["message"], tls)
    assert_no_secrets(report["message"], refusals["other_ca"])


@pytest.mark.parametrize("case", list(MISCONFIGURED))
def test_a_bad_security_setting_is_named(case, refusals, tls):
    """A security setting that can never work names its key (and the missing path), at
    construction or at the call, instead of "could not reach the scheduler"."""
    report = refusals["reports"].get(case)
    assert report is not None, f"no report on {case} (probe hung?): {refusals['logs'][-3000:]}"
    assert report["raised"] in ("DaskConfigError", "DaskBackendError"), report
    key, value = MISCONFIGURED[case]
    assert f"connection.security.{key}" in report["message"], report["message"]
    assert str(value) in report["message"], report["message"]
    assert_no_secrets(report["message"], tls)


def test_refusals_leave_the_process_able_to_connect(refusals):
    """After refusals, a correct connection in the same process opens and trains at once.

    Each refused ``distributed.Client`` keeps its IO-loop thread running. When the garbage
    collector finalises one while another Client starts its loop on the same thread,
    Client.__del__ -> LoopRunner.stop re-enters LoopRunner's class lock held by
    LoopRunner.start: every later Client in the process blocks forever.
    """
    reports = refusals["reports"]
    good = reports.get("good")
    assert good is not None, f"no report on connecting after refusals: {refusals['logs'][-3000:]}"
    assert good["raised"] is None and good["status"] == "COMPLETED", good
    assert good["elapsed"] < 20, good
    extra = {case: r["io_loops"] - reports["start"]["io_loops"] for case, r in reports.items()}
    # A refused client leaves no IO loop; the good one runs exactly its own.
    expected = {case: 1 if case == "good" else 0 for case in extra}
    assert extra == expected, f"IO loop threads running after each step: {extra}"


def test_refusals_log_no_certificate_contents(refusals, tls):
    assert "DSK10000002E" in refusals["logs"]  # the refusals were logged ...
    assert_no_secrets(refusals["logs"], tls)  # ... without the certificates
    assert_no_secrets(refusals["logs"], refusals["other_ca"])


# -- secrets stay out of reprs and messages --------------------------------------------------


def test_reprs_and_config_errors_show_paths_never_contents(tls, tls_connection, all_logs):
    trainer = DaskModelTrainer({"connection": tls_connection}, "repr")
    trainer.backend.client  # noqa: B018 - open it
    texts = [
        repr(trainer.backend.connection),
        repr(trainer.backend.settings),
        repr(ConnectionConfig.from_mapping(tls_connection)),
    ]
    for bad in (
        {**tls_connection, "security": {**tls.security(), "tls_client_kee": str(tls.key)}},
        {**tls_connection, "timeout": "soon"},
        {**tls_connection, "bogus": True},
    ):
        with pytest.raises(DaskConfigError) as caught:
            DaskModelTrainer({"connection": bad}, "bad")
        texts.append(str(caught.value))
    assert "tls_client_kee" in texts[3]
    for text in texts:
        assert_no_secrets(text, tls)
    assert_no_secrets(all_logs.text, tls)


def test_inline_pem_security_is_redacted(tls, tls_cluster, all_logs):
    """Dask's Security also takes the PEM text itself (e.g. from a Kubernetes secret in an
    environment variable); the connection works, and no repr, message or log prints it."""
    inline = {
        "tls_ca_file": tls.ca_file.read_text(),
        "tls_client_cert": tls.cert.read_text(),
        "tls_client_key": tls.key.read_text(),
        "require_encryption": True,
    }
    mapping = {"address": tls_cluster.address, "security": inline, "timeout": "20s"}
    trainer = DaskModelTrainer({"connection": mapping}, "inline")
    try:
        future = call_within(30, trainer.train, FaultModule)
        call_within(30, future.wait, 25)
        assert future.get_info().status is JobStatus.COMPLETED
        with pytest.raises(DaskConfigError) as caught:
            DaskModelTrainer({"connection": {**mapping, "timeout": "soon"}}, "inline-bad")
        texts = {
            "repr(DaskConnection)": repr(trainer.backend.connection),
            "repr(ConnectionConfig)": repr(trainer.backend.connection.config),
            "repr(BackendConfig)": repr(trainer.backend.settings),
            "config error": str(caught.value),
            "logs": all_logs.text,
        }
    finally:
        DaskConnection.from_config(mapping).close()
    leaking = [label for label, text in texts.items() if "PRIVATE KEY" in text]
    assert not leaking, f"the inline private key is shown by: {', '.join(leaking)}"
    for text in texts.values():
        assert_no_secrets(text, tls)
