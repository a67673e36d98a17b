"""The DASK job predictor's config: ``connection`` and ``retention_duration``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..config import ConnectionConfig, parse_retention
from ..errors import DaskConfigError, error

KNOWN_KEYS = ("connection", "retention_duration")


@dataclasses.dataclass(frozen=True)
class JobPredictorSettings:
    connection: ConnectionConfig
    retention_duration: timedelta | None

    @classmethod
    def from_mapping(cls, mapping: Any, path: str) -> JobPredictorSettings:
        """Validate at construction so a typo fails naming the key, not on the first job."""
        mapping = {} if mapping is None else mapping
        if not isinstance(mapping, Mapping):
            error(
                "<DSK70000001E>",
                DaskConfigError(
                    f"Invalid config {path}: expected a mapping, got {type(mapping).__name__}."
                ),
            )
        unknown = sorted(set(mapping) - set(KNOWN_KEYS))
        if unknown:
            error(
                "<DSK70000002E>",
                DaskConfigError(
                    f"Invalid config {path}.{unknown[0]}: unknown key. "
                    f"Known keys under {path}: {', '.join(KNOWN_KEYS)}."
                ),
            )
        return cls(
            connection=ConnectionConfig.from_mapping(
                mapping.get("connection"), f"{path}.connection"
            ),
            retention_duration=parse_retention(
                f"{path}.retention_duration", mapping.get("retention_duration")
            ),
        )
