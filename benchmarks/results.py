"""The results of one run as the judging and the rendering read them.

A run fills one dict: ``meta``, then one entry per section (its numbers, or
``{"error": ...}`` when it failed), then ``targets``. Any section may be
missing (``--only``) or failed, so readers look values up with ``lookup``.
"""

from __future__ import annotations

from typing import Any

# The benchmarks in the order a run measures them (``ray`` runs first when wanted).
SECTIONS = (
    "latency",
    "throughput",
    "scaling",
    "training",
    "memory",
    "scale",
    "batch",
    "many_models",
    "memory_pressure",
    "step_load",
    "gang",
    "runtime",
)


def lookup(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def is_number(value: Any) -> bool:
    """A measured number (not None, not NaN)."""
    return isinstance(value, (int, float)) and value == value
