"""Validation of the ``connection``, trainer and initializer config mappings.

Config reaches us as caikit's ``aconfig.Config`` or a plain dict; both are read
into frozen dataclasses here so that a typo or a wrong type fails at
construction, naming the key, instead of deep inside Dask later.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import ssl
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dask.utils import parse_bytes, parse_timedelta
from distributed.comm import registry as comm_registry
from distributed.comm.addressing import parse_address

from .errors import DaskConfigError, error

_SECURITY_KEYS = {
    "tls_ca_file",
    "tls_client_cert",
    "tls_client_key",
    "tls_scheduler_cert",
    "tls_scheduler_key",
    "tls_worker_cert",
    "tls_worker_key",
    "tls_min_version",
    "tls_max_version",
    "require_encryption",
    "extra_conn_args",
}

# caikit's LOCAL trainer spells retention as e.g. "1d2h30m10s"; keep that meaning.
_RETENTION_EXPR = re.compile(
    r"^((?P<days>\d+?)d)?((?P<hours>\d+?)h)?((?P<minutes>\d+?)m)?((?P<seconds>\d*\.?\d*?)s)?$"
)


def _fail(path: str, problem: str, fix: str) -> None:
    error("<DSK10000001E>", DaskConfigError(f"Invalid config {path}: {problem}. {fix}"))


def _as_plain(value: Any) -> Any:
    """aconfig.Config is a dict subclass with attribute access; copy to plain types."""
    if isinstance(value, Mapping):
        return {str(k): _as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_plain(v) for v in value]
    return value


# caikit merges its LOCAL defaults into the ``default`` trainer/initializer entry, so
# a ``type: DASK`` default arrives carrying these; they mean nothing to DASK.
CAIKIT_LOCAL_DEFAULT_KEYS = frozenset(
    {"use_subprocess", "subprocess_start_method", "backend_priority"}
)


def _check_keys(
    path: str, mapping: Any, allowed: set[str], inherited: frozenset = frozenset()
) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        _fail(path, f"expected a mapping, got {type(mapping).__name__}", "Give a mapping.")
    mapping = {key: value for key, value in mapping.items() if key not in inherited}
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        _fail(
            f"{path}.{unknown[0]}",
            "unknown key",
            f"Known keys under {path}: {', '.join(sorted(allowed))}.",
        )
    return _as_plain(mapping)


def _typed(path: str, value: Any, types: tuple[type, ...], default: Any = None) -> Any:
    if value is None:
        return default
    if isinstance(value, bool) and bool not in types:
        _fail(path, f"expected {_names(types)}, got bool", "Fix the value's type.")
    if not isinstance(value, types):
        _fail(path, f"expected {_names(types)}, got {type(value).__name__}", "Fix the type.")
    return value


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def parse_duration(path: str, value: Any, default: float | None) -> float | None:
    """Seconds from '60s', '5m', 2.5 or None (Dask's own duration syntax)."""
    if value is None:
        return default
    try:
        seconds = parse_timedelta(value)
    except (ValueError, TypeError, KeyError):
        _fail(path, f"{value!r} is not a duration", "Use e.g. 30s, 5m, 1h or a number of seconds.")
    if seconds is None or seconds < 0:
        _fail(path, f"{value!r} is negative", "Use a duration of zero or more.")
    return float(seconds)


def parse_size(path: str, value: Any) -> int | None:
    """Bytes from '64MB', '1GiB' or a number (Dask's own size syntax); None means no limit."""
    if value is None:
        return None
    try:
        size = parse_bytes(value)
    except (ValueError, TypeError):
        _fail(path, f"{value!r} is not a size", "Use e.g. 64MB, 1GiB or a number of bytes.")
    if size <= 0:
        _fail(path, f"{value!r} is not positive", "Use a size above zero.")
    return int(size)


def parse_retention(path: str, value: Any) -> timedelta | None:
    """Retention as caikit's LOCAL trainer reads it ("1d2h", "30m"), or Dask durations."""
    if value is None:
        return None
    match = _RETENTION_EXPR.match(str(value)) if isinstance(value, str) else None
    if match and any(match.groupdict().values()):
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return timedelta(**parts)
    return timedelta(seconds=parse_duration(path, value, None))


def parse_resources(path: str, value: Any) -> dict[str, float]:
    """Worker resources ({GPU: 1, MEMORY: 16e9}) as a dict of positive numbers."""
    resources = _check_keys(path, value, set(value or {})) if value is not None else {}
    for name, amount in resources.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            _fail(f"{path}.{name}", f"{amount!r} is not a non-negative number", "Use e.g. 1.")
    return {name: float(amount) for name, amount in resources.items()}


def validate_address(path: str, address: str) -> str:
    """Reject what Dask could never connect to, before any network call."""
    _typed(path, address, (str,))
    try:
        scheme, location = parse_address(address, strict=True)
    except ValueError:
        _fail(path, f"{address!r} is not a scheduler address", "Use e.g. tcp://host:8786.")
    if scheme not in comm_registry.backends:
        known = ", ".join(sorted(comm_registry.backends))
        _fail(path, f"unknown protocol {scheme!r} in {address!r}", f"Use one of: {known}.")
    if scheme in ("tcp", "tls"):
        host, _, port = location.rpartition(":")
        if not host or not port.isdigit():
            _fail(path, f"{address!r} has no host:port", "Use e.g. tcp://host:8786.")
    return address


def _check_security_values(path: str, security: dict) -> None:
    """Certificate files must exist (or be PEM text); TLS versions must be ones ssl knows."""
    for key, value in security.items():
        if key.startswith("tls_") and key.endswith(("_file", "_cert", "_key")):
            _typed(f"{path}.{key}", value, (str,))
            if value and "-----BEGIN" not in value and not os.path.isfile(value):
                _fail(f"{path}.{key}", f"no file at {value}", "Give the path of a PEM file.")
        if key.endswith("_version") and value is not None and value not in _TLS_VERSIONS:
            _fail(f"{path}.{key}", f"{value!r} is not a TLS version", "Use 1.2 or 1.3.")
    if "require_encryption" in security:
        _typed(f"{path}.require_encryption", security["require_encryption"], (bool,))


_TLS_VERSIONS = {1.2, 1.3, "1.2", "1.3", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3}


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """``connection.cluster``: a cluster class built from its import path."""

    class_path: str
    kwargs: dict
    adapt: dict | None


@dataclasses.dataclass(frozen=True)
class ConnectionConfig:
    """``connection``: where the Dask scheduler is and how to reach it."""

    address: str | None = None
    scheduler_file: str | None = None
    cluster: ClusterSpec | None = None
    local: dict = dataclasses.field(default_factory=dict)
    use_current_client: bool = True
    security: dict | None = dataclasses.field(default=None, repr=False)  # may hold a PEM key
    timeout: float = 30.0
    direct_to_workers: bool = True

    @classmethod
    def from_mapping(cls, mapping: Any, path: str = "connection") -> ConnectionConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        raw = _check_keys(path, mapping, allowed)
        targets = [key for key in ("address", "scheduler_file", "cluster") if raw.get(key)]
        if len(targets) > 1:
            _fail(path, f"{' and '.join(targets)} are both set", "Give only one of them.")
        address = raw.get("address")
        if address is not None:
            validate_address(f"{path}.address", address)
        scheduler_file = _typed(f"{path}.scheduler_file", raw.get("scheduler_file"), (str,))
        cluster = None
        if raw.get("cluster") is not None:
            cluster_raw = _check_keys(
                f"{path}.cluster", raw["cluster"], {"class", "kwargs", "adapt"}
            )
            class_path = _typed(f"{path}.cluster.class", cluster_raw.get("class"), (str,))
            if not class_path or "." not in class_path:
                _fail(
                    f"{path}.cluster.class",
                    f"{class_path!r} is not an import path",
                    "Use e.g. dask_kubernetes.operator.KubeCluster.",
                )
            adapt = cluster_raw.get("adapt")
            if adapt is not None:
                adapt = _check_keys(
                    f"{path}.cluster.adapt",
                    adapt,
                    {
                        "minimum",
                        "maximum",
                        "minimum_cores",
                        "maximum_cores",
                        "interval",
                        "wait_count",
                        "target_duration",
                    },
                )
            cluster = ClusterSpec(
                class_path=class_path,
                kwargs=_typed(f"{path}.cluster.kwargs", cluster_raw.get("kwargs"), (dict,), {}),
                adapt=adapt,
            )
        local = _typed(f"{path}.local", raw.get("local"), (dict,), {})
        if "resources" in local:
            local["resources"] = parse_resources(f"{path}.local.resources", local["resources"])
        security = raw.get("security")
        if security is not None:
            security = _check_keys(f"{path}.security", security, _SECURITY_KEYS)
            _check_security_values(f"{path}.security", security)
        return cls(
            address=address,
            scheduler_file=scheduler_file,
            cluster=cluster,
            local=local,
            use_current_client=_typed(
                f"{path}.use_current_client", raw.get("use_current_client"), (bool,), True
            ),
            security=security,
            timeout=parse_duration(f"{path}.timeout", raw.get("timeout"), 30.0),
            direct_to_workers=_typed(
                f"{path}.direct_to_workers", raw.get("direct_to_workers"), (bool,), True
            ),
        )

    def sharing_key(self) -> str:
        """Equal mappings share one client: the key is the canonical JSON of the config."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=repr)


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Everything a DaskBackend reads; trainers and initializers accept a subset."""

    connection: ConnectionConfig
    resources: dict
    module_resources: dict
    retries: int
    retention_duration: timedelta | None
    resource_timeout: float
    replicas: int
    call_timeout: float
    health_check_period: float
    max_payload_size: int | None

    TRAINER_KEYS = frozenset(
        {
            "connection",
            "resources",
            "module_resources",
            "retries",
            "retention_duration",
            "resource_timeout",
            "max_payload_size",
        }
    )
    INITIALIZER_KEYS = frozenset(
        {
            "connection",
            "resources",
            "replicas",
            "call_timeout",
            "health_check_period",
            "max_payload_size",
        }
    )
    BACKEND_KEYS = TRAINER_KEYS | INITIALIZER_KEYS

    @classmethod
    def from_mapping(
        cls, mapping: Any, path: str = "config", allowed: frozenset = BACKEND_KEYS
    ) -> BackendConfig:
        if isinstance(mapping, BackendConfig):
            return mapping
        raw = _check_keys(path, mapping or {}, set(allowed), CAIKIT_LOCAL_DEFAULT_KEYS)
        module_resources = _typed(
            f"{path}.module_resources", raw.get("module_resources"), (dict,), {}
        )
        retries = _typed(f"{path}.retries", raw.get("retries"), (int,), 0)
        if retries < 0:
            _fail(f"{path}.retries", f"{retries} is negative", "Use 0 or more.")
        replicas = _typed(f"{path}.replicas", raw.get("replicas"), (int,), 1)
        if replicas < 1:
            _fail(f"{path}.replicas", f"{replicas} is less than 1", "Use 1 or more.")
        return cls(
            connection=ConnectionConfig.from_mapping(raw.get("connection"), f"{path}.connection"),
            resources=parse_resources(f"{path}.resources", raw.get("resources")),
            module_resources={
                module_id: parse_resources(f"{path}.module_resources.{module_id}", value)
                for module_id, value in module_resources.items()
            },
            retries=retries,
            retention_duration=parse_retention(
                f"{path}.retention_duration", raw.get("retention_duration")
            ),
            resource_timeout=parse_duration(
                f"{path}.resource_timeout", raw.get("resource_timeout"), 60.0
            ),
            replicas=replicas,
            call_timeout=parse_duration(f"{path}.call_timeout", raw.get("call_timeout"), 60.0),
            health_check_period=parse_duration(
                f"{path}.health_check_period", raw.get("health_check_period"), 2.0
            ),
            max_payload_size=parse_size(f"{path}.max_payload_size", raw.get("max_payload_size")),
        )
