"""The papers' tables from loaded runs, as Markdown or CSV.

* :func:`method_table`: one row per method (and aggregator, backbone, dataset, imbalance
  ratio), columns All / Head / Medium / Tail mAP, Acc@1, Acc@5 — VideoLT's and MOVE's layout;
  runs that differ only in the seed are averaged (``n`` and the standard deviation kept);
* :func:`sweep_table`: imbalance ratio x method for one metric (MOVE's Table 2 layout).

Runs that differ in more than the seed (other epochs, learning rate, any override:
:mod:`vltr.analysis.settings`) are never averaged: they get a row (a column in the sweep
table) per setting, named by what differs, and :func:`table_warnings` says so.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from vltr.analysis.runs import RunResult
from vltr.analysis.settings import IMBALANCE_KEYS, NOT_SETTINGS, distinguishing_settings
from vltr.evaluation.tables import COLUMNS, format_value

# what identifies a table row besides the method: shown only when it varies across the rows
CONTEXT = ("aggregator", "features", "dataset", "imbalance_ratio")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _row_family(run: RunResult) -> tuple[Any, ...]:
    return (run.label, *(getattr(run, c) for c in CONTEXT))


def _column_family(run: RunResult) -> tuple[Any, ...]:
    return (run.label, run.aggregator, run.features, run.dataset)


def table_warnings(runs: Sequence[RunResult]) -> list[str]:
    """Why a table has more rows (or sweep columns) than methods: runs of one method that
    differ in more than the seed; and groups whose runs repeat a seed."""
    out: list[str] = []
    for family, excluded, seeds in (
        (_row_family, NOT_SETTINGS, True),
        (_column_family, NOT_SETTINGS + IMBALANCE_KEYS, False),
    ):
        out += [
            w for w in distinguishing_settings(runs, family, excluded, seeds)[1] if w not in out
        ]
    return out


def method_table(runs: Sequence[RunResult], split: str = "test") -> list[dict[str, Any]]:
    """Rows ``{method, aggregator, features, dataset, imbalance_ratio, settings, n, failed,
    <metric>, <metric>_std}``, in the order the methods first appear. Runs are averaged only
    when they differ in the seed alone; otherwise ``settings`` names what tells the rows
    apart (empty when nothing does). Failed runs are counted in ``failed`` and left out of the
    means; a row whose runs all failed has no metric values."""
    settings, _ = distinguishing_settings(runs, _row_family)
    groups: dict[tuple[Any, ...], list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[(*_row_family(run), settings[id(run)])].append(run)
    rows = []
    for (label, *context, setting), members in groups.items():
        ok = [r for r in members if not r.failed and r.metrics(split)]
        row: dict[str, Any] = {
            "method": label,
            **dict(zip(CONTEXT, context, strict=True)),
            "settings": setting,
            "n": len(ok),
            "failed": len(members) - len(ok),
        }
        for key, _ in COLUMNS:
            values = [r.metrics(split)[key] for r in ok if key in r.metrics(split)]
            if values:
                row[key], row[f"{key}_std"] = _mean_std(values)
        rows.append(row)
    return rows


def sweep_table(
    runs: Sequence[RunResult], metric: str = "mAP", split: str = "test"
) -> list[dict[str, Any]]:
    """Rows ``{imbalance_ratio, <method>: mean metric, ...}``, sorted by imbalance ratio
    (most imbalanced first). Methods are named ``label`` or, where one label appears with
    several aggregators, ``label/aggregator``, followed by ``[settings]`` where runs of one
    method differ in more than the seed and the ratio. Runs without an imbalance ratio are the
    row ``None`` (the store's own train split)."""
    cells: dict[tuple[Any, str], list[float]] = defaultdict(list)
    aggregators: dict[str, set[str | None]] = defaultdict(set)
    for run in runs:
        aggregators[run.label].add(run.aggregator)
    settings, _ = distinguishing_settings(runs, _column_family, NOT_SETTINGS + IMBALANCE_KEYS)
    names: list[str] = []
    for run in runs:
        name = f"{run.label}/{run.aggregator}" if len(aggregators[run.label]) > 1 else run.label
        if settings[id(run)]:
            name += f" [{settings[id(run)]}]"
        if name not in names:
            names.append(name)
        values = run.metrics(split)
        if not run.failed and metric in values:
            cells[(run.imbalance_ratio, name)].append(values[metric])
        else:
            cells.setdefault((run.imbalance_ratio, name), [])
    ratios = sorted({ir for ir, _ in cells}, key=lambda v: (v is None, v if v is not None else 0))
    rows = []
    for ir in ratios:
        row: dict[str, Any] = {"imbalance_ratio": ir}
        for name in names:
            values = cells.get((ir, name))
            if values is not None:
                row[name] = _mean_std(values)[0] if values else None
        rows.append(row)
    return rows


def _fmt(value: Any, std: float | None = None) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float):  # n/a: e.g. tail mAP when no class has that few videos
        return format_value(value, std or None, digits=3)
    return str(value)


def _columns_of_method_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    varying = [c for c in CONTEXT if len({r.get(c) for r in rows}) > 1]
    split = ["settings"] if any(r.get("settings") for r in rows) else []
    # the aggregator is part of a method's identity (MOVE's "with Agg" grid): always shown
    return ["method", *(["aggregator"] if "aggregator" not in varying else []), *varying, *split]


def to_markdown(rows: Sequence[dict[str, Any]], kind: str = "methods") -> str:
    """A Markdown table of :func:`method_table` (``kind="methods"``) or :func:`sweep_table`
    (``kind="sweep"``) rows."""
    if not rows:
        return "(no runs)"
    if kind == "sweep":
        names = [k for k in rows[0] if k != "imbalance_ratio"]
        for row in rows[1:]:
            names += [k for k in row if k != "imbalance_ratio" and k not in names]
        lines = ["| imbalance ratio | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
        for row in rows:
            ir = "train split" if row["imbalance_ratio"] is None else f"{row['imbalance_ratio']:g}"
            lines.append(
                f"| {ir} | " + " | ".join(_fmt(row[n]) if n in row else "" for n in names) + " |"
            )
        return "\n".join(lines)
    if kind != "methods":
        raise ValueError(f"kind must be methods or sweep, got {kind!r}")
    ident = _columns_of_method_rows(rows)
    head = [*ident, *(t for _, t in COLUMNS), "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [_fmt(row.get(c)) if row.get(c) not in (None, "") else "-" for c in ident]
        cells += [
            _fmt(row.get(k), row.get(f"{k}_std")) if k in row else "failed" for k, _ in COLUMNS
        ]
        cells.append(str(row["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text with every key of ``rows`` (full precision; empty for a missing value)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in keys})
    return out.getvalue()
