"""Helpers for the reliability suite: bounded calls, throwaway TLS certificates, and
``dask scheduler`` / ``dask worker`` subprocesses speaking TLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster_support import ProcessCluster, poll, worker_env
from distributed import Client
from distributed.security import Security


def call_within(seconds: float, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``function`` and return its result or raise its exception, within ``seconds``.

    The call runs in a daemon thread: if it hangs, the test fails here, naming the call,
    instead of hanging the suite.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name=f"bounded-{function.__name__}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"{function.__name__} neither returned nor raised within {seconds}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# -- throwaway certificates ------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of one throwaway CA and a certificate/key pair it signed."""

    ca_file: Path
    cert: Path
    key: Path

    def secrets(self) -> list[str]:
        """Text that must never appear in logs or messages: PEM bodies of cert and key."""
        texts = []
        for path in (self.cert, self.key, self.ca_file):
            body = [
                line
                for line in path.read_text().splitlines()
                if line and not line.startswith("-----")
            ]
            texts += body
        return texts

    def security(self, **overrides: Any) -> dict[str, Any]:
        """The ``connection.security`` mapping of a client holding this certificate."""
        return {
            "tls_ca_file": str(self.ca_file),
            "tls_client_cert": str(self.cert),
            "tls_client_key": str(self.key),
            "require_encryption": True,
            **overrides,
        }


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_tls_files(directory: Path, name: str = "dask") -> TLSFiles:
    """A new CA and a certificate for 127.0.0.1 / localhost signed by it, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = _key()
    ca_name = _name(f"{name} throwaway test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TLSFiles(
        ca_file=directory / f"{name}-ca.pem",
        cert=directory / f"{name}-cert.pem",
        key=directory / f"{name}-key.pem",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    return files


# -- a TLS cluster as separate processes -----------------------------------------------------


class TLSProcessCluster(ProcessCluster):
    """``dask scheduler --protocol tls`` and ``dask worker tls://...``, mutual TLS with one CA."""

    def __init__(self, tmp_path: Path, tls: TLSFiles):
        self.tmp_path = tmp_path
        self.tls = tls
        self.scheduler_file = tmp_path / "scheduler.json"
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
                *self._tls_args(),
            ],
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "scheduler.log", "wb"),  # noqa: SIM115
        )
        try:
            poll(self.scheduler_file.exists, 30, what="TLS scheduler file")
            self.address = poll(
                lambda: json.loads(self.scheduler_file.read_text() or "{}").get("address"), 30
            )
            self.client = Client(
                self.address,
                security=Security(**tls.security()),
                set_as_default=False,
                timeout=20,
            )
        except BaseException:
            self.scheduler.kill()
            self.scheduler.wait(10)
            raise

    def _tls_args(self) -> list[str]:
        return [
            "--tls-ca-file",
            str(self.tls.ca_file),
            "--tls-cert",
            str(self.tls.cert),
            "--tls-key",
            str(self.tls.key),
        ]

    def worker_extra_args(self) -> list[str]:
        return self._tls_args()

    def close_client(self) -> None:
        """Closing the observing client may hang after a refused handshake: bound it."""
        call_within(15, self.client.close, timeout=5)

    def logs(self) -> str:
        """Everything the scheduler and workers wrote to their logs."""
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.tmp_path.glob("*.log"))
        )
