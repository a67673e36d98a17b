"""Validation of the ``connection``, trainer and initializer config mappings.

Config reaches us as caikit's ``aconfig.Config`` or a plain dict; both are read
into frozen dataclasses here so that a typo or a wrong type fails at
construction, naming the key, instead of deep inside Dask later.

Each key is declared once, as a dataclass field made by ``setting``: its parser,
its default (as it would be written in config) and the adapters that accept it.
``BackendConfig.TRAINER_KEYS`` / ``INITIALIZER_KEYS`` are derived from those.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import ssl
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

import dask.config
from dask.utils import parse_bytes, parse_timedelta
from distributed.comm import registry as comm_registry
from distributed.comm.addressing import parse_address
from distributed.security import Security

from .errors import invalid_config as _fail
from .kubernetes import check_k8s_resources, check_worker_groups

# The adapters a backend key can belong to.
TRAINER = "trainer"
INITIALIZER = "initializer"
BOTH = (TRAINER, INITIALIZER)

# Whatever distributed's Security accepts, and nothing else.
SECURITY_KEYS = frozenset(Security.__slots__)
_TLS_VERSIONS = {
    version: tls
    for tls, spellings in (
        (ssl.TLSVersion.TLSv1_2, (1.2, "1.2", "TLSv1_2")),
        (ssl.TLSVersion.TLSv1_3, (1.3, "1.3", "TLSv1_3")),
    )
    for version in (*spellings, tls)
}

# caikit's LOCAL trainer spells retention as e.g. "1d2h30m10s"; keep that meaning.
_RETENTION_EXPR = re.compile(
    r"^((?P<days>\d+?)d)?((?P<hours>\d+?)h)?((?P<minutes>\d+?)m)?((?P<seconds>\d*\.?\d*?)s)?$"
)


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


def parse_security(path: str, value: Any) -> dict | None:
    """``Security`` kwargs: its own keys, certificate files that exist (or PEM text),
    TLS versions as ``ssl.TLSVersion`` (config spells them 1.2 / 1.3)."""
    if value is None:
        return None
    security = _check_keys(path, value, SECURITY_KEYS)
    for key, item in security.items():
        where = f"{path}.{key}"
        if key.endswith("_version"):
            if item is not None and item not in _TLS_VERSIONS:
                _fail(where, f"{item!r} is not a TLS version", "Use 1.2 or 1.3.")
            security[key] = None if item is None else _TLS_VERSIONS[item]
        elif key == "require_encryption":
            _typed(where, item, (bool,))
        elif key == "extra_conn_args":
            _typed(where, item, (dict,))
        else:
            _typed(where, item, (str,))
            is_path = key != "tls_ciphers" and item and "-----BEGIN" not in item
            if is_path and not os.path.isfile(item):
                _fail(where, f"no file at {item}", "Give the path of a PEM file.")
    return security


# -- one declaration per key -------------------------------------------------------------


def setting(
    parse: Callable[[str, Any], Any],
    default: Any = None,
    adapters: tuple[str, ...] = BOTH,
    **field_options: Any,
) -> Any:
    """Declare a config key once: its parser, its default as written in config, and the
    adapters (trainer, initializer) that accept it."""
    metadata = {"parse": parse, "default": default, "adapters": frozenset(adapters)}
    return dataclasses.field(metadata=metadata, **field_options)


def _parse_declared(cls: type, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared field of ``cls`` parsed from ``raw`` (its default when absent)."""
    values = {}
    for field in dataclasses.fields(cls):
        declared = field.metadata
        value = raw.get(field.name)
        values[field.name] = declared["parse"](
            f"{path}.{field.name}", declared["default"] if value is None else value
        )
    return values


def accepted_keys(cls: type, adapter: str) -> frozenset[str]:
    """The keys of ``cls`` that ``adapter`` accepts."""
    return frozenset(
        field.name for field in dataclasses.fields(cls) if adapter in field.metadata["adapters"]
    )


def _of_type(*types: type) -> Callable[[str, Any], Any]:
    return lambda path, value: _typed(path, value, types)


def _count(minimum: int) -> Callable[[str, Any], int]:
    def parse(path: str, value: Any) -> int:
        count = _typed(path, value, (int,))
        if count < minimum:
            problem = "negative" if minimum == 0 else f"less than {minimum}"
            _fail(path, f"{count} is {problem}", f"Use {minimum} or more.")
        return count

    return parse


def _limit(path: str, value: Any) -> int | None:
    """A count of zero or more; None (the default) is no limit."""
    return None if value is None else _count(0)(path, value)


def _fraction(path: str, value: Any) -> float:
    fraction = float(_typed(path, value, (int, float)))
    if not 0 < fraction <= 1:
        _fail(path, f"{fraction} is not in (0, 1]", "Use a share such as 0.8.")
    return fraction


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(path: str, value: Any) -> str:
        if _typed(path, value, (str,)) not in choices:
            _fail(path, f"{value!r} is not one of {', '.join(choices)}", f"Use {choices[0]!r}.")
        return value

    return parse


DIRECT_CALLS_KEY = "caikit_dask.direct-calls"  # dask config: the default of ``direct_calls``


def _direct_calls(path: str, value: Any) -> str:
    """``auto`` or ``off``; unset: the dask config ``caikit_dask.direct-calls`` (auto)."""
    if value is None:
        value = dask.config.get(DIRECT_CALLS_KEY, "auto")
        path = f"dask config {DIRECT_CALLS_KEY}"
    return _choice("auto", "off")(path, value)


def _duration(path: str, value: Any) -> float | None:
    return parse_duration(path, value, None)


def _positive_duration(path: str, value: Any) -> float | None:
    seconds = parse_duration(path, value, None)
    if seconds == 0:
        _fail(path, f"{value!r} is zero", "Use a duration above zero, e.g. 10s.")
    return seconds


def _address(path: str, value: Any) -> str | None:
    return None if value is None else validate_address(path, value)


def _local(path: str, value: Any) -> dict:
    local = dict(_typed(path, value, (dict,)))
    if "resources" in local:
        local["resources"] = parse_resources(f"{path}.resources", local["resources"])
    return local


def _module_world_size(path: str, value: Any) -> dict[str, int]:
    return {
        module_id: _count(1)(f"{path}.{module_id}", size)
        for module_id, size in _typed(path, value, (dict,)).items()
    }


def _module_resources(path: str, value: Any) -> dict[str, dict[str, float]]:
    return {
        module_id: parse_resources(f"{path}.{module_id}", resources)
        for module_id, resources in _typed(path, value, (dict,)).items()
    }


# -- the config objects ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AutoscalingConfig:
    """``autoscaling``: replicas that follow the load (see ``loading.upkeep.autoscaler``).

    Ray Serve's defaults: a target of 2 calls in flight per replica, 30s to grow,
    600s to shrink. ``max_replicas`` has no default: how far a model may grow is a
    choice about the cluster's room that only the deployer can make.
    """

    min_replicas: int = setting(_count(0), 1)
    max_replicas: int = setting(_count(1), None)
    target_ongoing_requests: float = setting(_of_type(int, float), 2)
    upscale_delay: float = setting(_duration, "30s")
    downscale_delay: float = setting(_duration, "600s")

    @classmethod
    def parse(cls, path: str, value: Any) -> AutoscalingConfig | None:
        if value is None:
            return None
        raw = _check_keys(path, value, {field.name for field in dataclasses.fields(cls)})
        if raw.get("max_replicas") is None:
            _fail(
                f"{path}.max_replicas",
                "missing",
                "Give the most replicas the model may grow to, e.g. max_replicas: 4.",
            )
        config = cls(**_parse_declared(cls, path, raw))
        if config.max_replicas < config.min_replicas:
            _fail(
                f"{path}.max_replicas",
                f"{config.max_replicas} is less than min_replicas={config.min_replicas}",
                "Use a max_replicas of at least min_replicas.",
            )
        if config.target_ongoing_requests <= 0:
            _fail(
                f"{path}.target_ongoing_requests",
                f"{config.target_ongoing_requests} is not positive",
                "Use a number of calls in flight per replica above zero, e.g. 2.",
            )
        return config

    @property
    def initial_replicas(self) -> int:
        """Replicas placed at load: ``min_replicas``, at least one (0 loads on demand)."""
        return max(self.min_replicas, 1)


_ADAPT_KEYS = {
    "minimum",
    "maximum",
    "minimum_cores",
    "maximum_cores",
    "interval",
    "wait_count",
    "target_duration",
}


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """``connection.cluster``: a cluster class built from its import path."""

    class_path: str
    kwargs: dict
    adapt: dict | None

    @property
    def is_kubernetes(self) -> bool:
        """dask-kubernetes classes are built by ``caikit_dask.kubernetes``."""
        return self.class_path.startswith("dask_kubernetes")

    @classmethod
    def parse(cls, path: str, value: Any) -> ClusterSpec | None:
        if value is None:
            return None
        raw = _check_keys(path, value, {"class", "kwargs", "adapt"})
        class_path = _typed(f"{path}.class", raw.get("class"), (str,))
        if not class_path or "." not in class_path:
            _fail(
                f"{path}.class",
                f"{class_path!r} is not an import path",
                "Use e.g. dask_kubernetes.operator.KubeCluster.",
            )
        adapt = raw.get("adapt")
        if adapt is not None:
            adapt = _check_keys(f"{path}.adapt", adapt, _ADAPT_KEYS)
        spec = cls(
            class_path=class_path,
            kwargs=_typed(f"{path}.kwargs", raw.get("kwargs"), (dict,), {}),
            adapt=adapt,
        )
        if spec.is_kubernetes:
            kwargs = spec.kwargs
            check_worker_groups(f"{path}.kwargs.worker_groups", kwargs.get("worker_groups"))
            for key in ("resources", "scheduler_resources"):
                check_k8s_resources(f"{path}.kwargs.{key}", kwargs.get(key))
        return spec


@dataclasses.dataclass(frozen=True)
class ConnectionConfig:
    """``connection``: where the Dask scheduler is and how to reach it."""

    address: str | None = setting(_address)
    scheduler_file: str | None = setting(_of_type(str))
    cluster: ClusterSpec | None = setting(ClusterSpec.parse)
    local: dict = setting(_local, {})
    use_current_client: bool = setting(_of_type(bool), True)
    security: dict | None = setting(parse_security, repr=False)  # may hold a PEM key
    timeout: float | None = setting(_duration)  # None: dask's distributed.comm.timeouts.connect
    direct_to_workers: bool = setting(_of_type(bool), True)

    @classmethod
    def from_mapping(cls, mapping: Any, path: str = "connection") -> ConnectionConfig:
        if isinstance(mapping, ConnectionConfig):
            return mapping
        raw = _check_keys(path, mapping, {field.name for field in dataclasses.fields(cls)})
        targets = [key for key in ("address", "scheduler_file", "cluster") if raw.get(key)]
        if len(targets) > 1:
            _fail(path, f"{' and '.join(targets)} are both set", "Give only one of them.")
        return cls(**_parse_declared(cls, path, raw))

    @classmethod
    def parse(cls, path: str, value: Any) -> ConnectionConfig:
        return cls.from_mapping(value, path)

    @property
    def connect_timeout(self) -> float:
        """``timeout``, else dask's ``distributed.comm.timeouts.connect`` read now."""
        if self.timeout is not None:
            return self.timeout
        return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s"))

    def sharing_key(self) -> str:
        """Equal mappings share one client: the key is the canonical JSON of the config."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=repr)


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Everything a DaskBackend reads; trainers and initializers accept a subset."""

    connection: ConnectionConfig = setting(ConnectionConfig.parse, {})
    resources: dict = setting(parse_resources, {})
    module_resources: dict = setting(_module_resources, {}, (TRAINER,))
    retries: int = setting(_count(0), 0, (TRAINER,))
    retention_duration: timedelta | None = setting(parse_retention, None, (TRAINER,))
    resource_timeout: float = setting(_duration, "60s", (TRAINER,))
    log_lines: int = setting(_count(1), 1000, (TRAINER,))
    world_size: int = setting(_count(1), 1, (TRAINER,))  # ranks per training (``training.gang``)
    module_world_size: dict = setting(_module_world_size, {}, (TRAINER,))
    replicas: int = setting(_count(1), 1, (INITIALIZER,))
    call_timeout: float = setting(_duration, "60s", (INITIALIZER,))
    health_check_period: float = setting(_duration, "2s", (INITIALIZER,))
    health_check_timeout: float = setting(_positive_duration, "10s", (INITIALIZER,))
    max_queued_calls: int | None = setting(_limit, None, (INITIALIZER,))
    max_payload_size: int | None = setting(parse_size)
    memory_fraction: float = setting(_fraction, 0.8, (INITIALIZER,))
    eviction: str = setting(_choice("none", "lru"), "none", (INITIALIZER,))
    lazy: bool = setting(_of_type(bool), False, (INITIALIZER,))
    autoscaling: AutoscalingConfig | None = setting(AutoscalingConfig.parse, None, (INITIALIZER,))
    # auto: straight to the worker holding the model when reachable (loading.wire.direct_channel)
    direct_calls: str = setting(_direct_calls, None, (INITIALIZER,))

    TRAINER_KEYS: ClassVar[frozenset[str]]
    INITIALIZER_KEYS: ClassVar[frozenset[str]]
    BACKEND_KEYS: ClassVar[frozenset[str]]

    @classmethod
    def from_mapping(
        cls, mapping: Any, path: str = "config", allowed: frozenset | None = None
    ) -> BackendConfig:
        if isinstance(mapping, BackendConfig):
            return mapping
        allowed = cls.BACKEND_KEYS if allowed is None else allowed
        raw = _check_keys(path, mapping or {}, set(allowed), CAIKIT_LOCAL_DEFAULT_KEYS)
        if raw.get("autoscaling") is not None and raw.get("replicas") is not None:
            _fail(
                f"{path}.autoscaling",
                "replicas and autoscaling are both set",
                "Give either a fixed replicas or autoscaling (min_replicas/max_replicas).",
            )
        return cls(**_parse_declared(cls, path, raw))


BackendConfig.TRAINER_KEYS = accepted_keys(BackendConfig, TRAINER)
BackendConfig.INITIALIZER_KEYS = accepted_keys(BackendConfig, INITIALIZER)
BackendConfig.BACKEND_KEYS = BackendConfig.TRAINER_KEYS | BackendConfig.INITIALIZER_KEYS
