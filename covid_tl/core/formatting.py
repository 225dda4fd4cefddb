"""How a number and a table look wherever a person reads results: the terminal, model_card.md,
summary.md and report.html. One formatter, so the same metric never reads two ways."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Shown for a value that is missing or undefined (a rate of a set without the class it needs).
MISSING = "-"


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any, interval: Sequence[float] | None = None, digits: int = 3) -> str:
    """`0.912 [0.850, 0.950]`: a metric with its interval, at `digits` decimals; `-` when undefined."""
    if is_missing(value):
        return MISSING
    if not isinstance(value, float):
        return str(value)
    text = f"{value:.{digits}f}"
    if interval is not None and not any(is_missing(v) for v in interval):
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


def median_range(spread: Mapping[str, Any] | None) -> str:
    """`0.87 [0.53, 0.98]`: the median and 5-95% of a rate over draws (stats.site.spread's
    quantiles), at two decimals; `-` without draws."""
    q = (spread or {}).get("quantiles")
    return number(q["0.5"], [q["0.05"], q["0.95"]], digits=2) if q else MISSING


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Lines of a Markdown table; cells that are floats go through number()."""
    def cell(value: Any) -> str:
        return number(value) if isinstance(value, float) or value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
