"""From the command line's options to a connection, as Dask's own tools find a scheduler.

The scheduler comes from ``--scheduler``, else a caikit ``--config`` file (the
``connection`` of its DASK initializer or trainer), else dask config
``scheduler-address`` (the environment variable ``DASK_SCHEDULER_ADDRESS``). TLS files
are named as ``dask`` names them. The command line never starts a cluster of its own.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

import dask.config
import yaml
from caikit.core.exceptions.caikit_core_exception import CaikitCoreException
from distributed import Client

from ..connection import DaskConnection
from ..errors import DaskBackendError, DaskConfigError


class CliError(Exception):
    """A failure to report in one line: ``exit_code`` 1 (refused or unreachable), 2 (usage)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The options every command takes, before or after the command's name."""
    group = parser.add_argument_group("connection")
    hidden = argparse.SUPPRESS
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=hidden,
        help="the scheduler, e.g. tcp://scheduler:8786 (default: DASK_SCHEDULER_ADDRESS / "
        "dask config scheduler-address)",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        default=hidden,
        help="a caikit config file: its DASK initializer's (or trainer's) connection",
    )
    group.add_argument("--tls-ca-file", metavar="FILE", default=hidden, help="CA certificate")
    group.add_argument("--tls-cert", metavar="FILE", default=hidden, help="client certificate")
    group.add_argument("--tls-key", metavar="FILE", default=hidden, help="client key")
    group.add_argument("--timeout", metavar="DURATION", default=hidden, help="connect timeout")
    parser.add_argument("--json", action="store_true", default=hidden, help="print JSON")


def option(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def connection_mapping(args: argparse.Namespace) -> dict[str, Any]:
    """The ``connection`` mapping the options describe (validated by the backend's parser)."""
    mapping: dict[str, Any] = {}
    config_file = option(args, "config")
    if config_file:
        mapping = _from_caikit_config(config_file)
    address = option(args, "scheduler")
    if address:
        mapping = {k: v for k, v in mapping.items() if k not in ("scheduler_file", "cluster")}
        mapping["address"] = address
    if not any(mapping.get(key) for key in ("address", "scheduler_file")):
        address = dask.config.get("scheduler-address", None)
        if not address:
            raise CliError(
                "no scheduler given: pass --scheduler tcp://host:8786, set "
                "DASK_SCHEDULER_ADDRESS, or --config a caikit config with a connection.address",
                2,
            )
        mapping["address"] = address
    tls = {
        "tls_ca_file": option(args, "tls_ca_file"),
        "tls_client_cert": option(args, "tls_cert"),
        "tls_client_key": option(args, "tls_key"),
    }
    if any(tls.values()):
        security = dict(mapping.get("security") or {})
        security.update({k: v for k, v in tls.items() if v})
        security.setdefault("require_encryption", True)
        mapping["security"] = security
    if option(args, "timeout"):
        mapping["timeout"] = args.timeout
    mapping["use_current_client"] = False
    mapping.pop("local", None)
    return mapping


def _from_caikit_config(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle) or {}
    except OSError as err:
        raise CliError(f"cannot read --config {path}: {err}", 2) from None
    management = config.get("model_management") or {}
    for section in ("initializers", "trainers"):
        for entry in (management.get(section) or {}).values():
            if (entry or {}).get("type") == "DASK" and "connection" in (entry.get("config") or {}):
                return dict(entry["config"]["connection"] or {})
    raise CliError(
        f"--config {path} has no DASK initializer or trainer with a connection "
        "(model_management.initializers.<name>.config.connection)",
        2,
    )


@contextlib.contextmanager
def connected(args: argparse.Namespace) -> Iterator[Client]:
    """A client on the scheduler the options name; closed afterwards. Failures become
    one-line errors naming the scheduler."""
    try:
        connection = DaskConnection.from_config(connection_mapping(args))
        client = connection.acquire()
    except (DaskBackendError, DaskConfigError) as err:
        raise CliError(str(err)) from None
    try:
        yield client
    except CaikitCoreException as err:
        raise CliError(err.message) from None
    except DaskBackendError as err:
        raise CliError(str(err)) from None
    finally:
        connection.release()
