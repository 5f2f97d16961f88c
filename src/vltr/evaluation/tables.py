"""The papers' results table: overall / head / medium / tail mAP and Acc@k, one header set for
every table vltr prints or writes (the console table of a run, vltr-report's tables)."""

from __future__ import annotations

import math
from collections.abc import Mapping

# (metrics.json key, column title): the papers' order and titles
COLUMNS: tuple[tuple[str, str], ...] = (
    ("mAP", "All"),
    ("mAP_head", "Head"),
    ("mAP_medium", "Medium"),
    ("mAP_tail", "Tail"),
    ("acc1", "Acc@1"),
    ("acc5", "Acc@5"),
)


def format_value(value: float | None, std: float | None = None, digits: int = 4) -> str:
    """A metric cell: ``0.7343``, ``0.7343 ± 0.0120`` with a standard deviation, ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if std is not None else text


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """One row per split (or method), the papers' columns, aligned for a terminal (and valid
    Markdown)."""
    header = f"| {'':<6} | " + " | ".join(f"{title:>7}" for _, title in COLUMNS) + " |"
    lines = [header, "|" + "|".join(["-" * 8] + ["-" * 9] * len(COLUMNS)) + "|"]
    for name, metrics in rows.items():
        cells = [f"{format_value(metrics.get(key)):>7}" for key, _ in COLUMNS]
        lines.append(f"| {name:<6} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
