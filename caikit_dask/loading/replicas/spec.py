"""What a model's replicas are, as the loader builds it from the backend's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..placement.memory import MemoryPolicy
from ..placement.source import ModelSource


@dataclass(frozen=True)
class ReplicaSpec:
    """The model, where it loads from, and the settings its replicas and calls follow."""

    module_id: str
    source: ModelSource
    library: str | None  # imported on the workers before loading (None: sent by value)
    count: int
    resources: dict[str, float]
    call_timeout: float
    health_check_period: float
    max_payload_size: int | None
    # A replica whose actor has not answered a ping for this long is dead (see ``upkeep.pings``).
    health_check_timeout: float = 10.0
    max_queued_calls: int | None = None  # None: no limit (see ``replicas.backpressure``)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    size_on_disk: int = 0  # the first estimate of the model's memory (see ``placement.memory``)
    lazy: bool = False  # load on the first call rather than at load()
    direct_calls: bool = True  # calls go straight to the worker when it is reachable
