"""Plain-text tables for a terminal: aligned columns, numbers to the right."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dask.utils import format_bytes


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """``headers`` over ``rows``; the columns at indices ``right`` are right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def size(value: Any) -> str:
    """Bytes for reading (``1.2 GiB``), ``-`` when unknown."""
    return "-" if value is None else format_bytes(int(value))
