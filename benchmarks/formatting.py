"""Number formatting and plain-text tables shared by the benchmark reports.

Numbers keep the unit their column names (us, ms, calls/s), so columns line
up and compare at a glance; an unmeasured value prints as ``-``.
"""

from __future__ import annotations

from typing import Any

from .results import is_number


def number(value: Any, spec: str = ".0f") -> str:
    """``value`` formatted with ``spec``, or ``-`` when it was not measured."""
    return format(value, spec) if is_number(value) else "-"


def factor(value: Any, spec: str = ".2f") -> str:
    """A ratio read as "times": ``1.93x``."""
    return f"{number(value, spec)}x" if is_number(value) else "-"


def ratio(numerator: Any, denominator: Any) -> str:
    """``numerator / denominator`` as a factor, one decimal fewer from 10x up."""
    if not numerator or not denominator:
        return "-"
    value = numerator / denominator
    return factor(value, ".1f" if value >= 10 else ".2f")


def table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in pairs)

    return ["", f"== {title} ==", line(header), line(["-" * w for w in widths])] + [
        line(r) for r in rows
    ]
