"""Numbers as a user would write them: ``1`` not ``1.0``, ``30s`` not ``30.0s``.

Config and worker resources arrive as floats (``GPU: 1`` is stored as ``1.0``);
messages, progress bars, ``dask worker --resources`` arguments and Kubernetes
quantities show them back the way they were written. Durations and sizes for
reading, not for config, use ``dask.utils.format_time`` / ``format_bytes``.
"""

from __future__ import annotations

from typing import Any


def whole(value: Any) -> Any:
    """``value`` as an int when it is a whole float (``2.0`` -> ``2``), else unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def seconds(value: float) -> str:
    """A duration in config syntax (``30s``, ``0.5s``), for messages that name a key."""
    return f"{whole(float(value))}s"
