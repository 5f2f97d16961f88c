"""The notebooks' figures. Each function draws on ``ax`` (a new figure if None) and returns
the axes, so notebooks compose them and tests can check what was drawn. matplotlib is imported
on first use (``pip install vltr[analysis]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vltr.analysis.dataset import ClassDistribution
from vltr.analysis.runs import RunResult, load_per_class
from vltr.analysis.tables import method_table
from vltr.data.longtail import GROUP_NAMES
from vltr.utils.errors import StoreError

GROUP_COLORS = {"head": "tab:blue", "medium": "tab:orange", "tail": "tab:red"}


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4))[1]


def plot_class_distribution(dist: ClassDistribution, ax: Any = None, loglog: bool = False) -> Any:
    """Training videos per class by descending count, coloured by group (``loglog``: both
    axes logarithmic, the power-law view)."""
    ax = _axes(ax)
    order = dist.order
    rank = np.arange(1, len(order) + 1)
    counts = dist.train[order]
    groups = dist.groups[order]
    for g in GROUP_NAMES:
        sel = groups == g
        if sel.any():
            if loglog:
                ax.plot(
                    rank[sel],
                    counts[sel],
                    ".",
                    color=GROUP_COLORS[g],
                    label=f"{g} ({int(sel.sum())})",
                )
            else:
                ax.bar(
                    rank[sel],
                    counts[sel],
                    width=1.0,
                    color=GROUP_COLORS[g],
                    label=f"{g} ({int(sel.sum())})",
                )
    if loglog:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("class rank (by training count)")
    ax.set_ylabel("training videos")
    ax.set_title(f"imbalance ratio {dist.imbalance_ratio:.3g}")
    ax.legend()
    return ax


def plot_ap_vs_count(runs: Sequence[RunResult], split: str = "test", ax: Any = None) -> Any:
    """Per-class AP against the class's training count (log x), one series per run."""
    ax = _axes(ax)
    for run in runs:
        try:
            rows = load_per_class(run, split)
        except StoreError:  # a run evaluated without that split (test=false): nothing to plot
            continue
        ax.scatter(
            [r["train_count"] for r in rows],
            [r["ap"] for r in rows],
            s=12,
            alpha=0.7,
            label=f"{run.label}/{run.aggregator}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("training videos of the class")
    ax.set_ylabel(f"{split} AP")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_group_bars(runs: Sequence[RunResult], split: str = "test", ax: Any = None) -> Any:
    """Grouped bars: head / medium / tail mAP per method (the rows of :func:`method_table`)."""
    ax = _axes(ax)
    rows = [r for r in method_table(runs, split) if "mAP" in r]
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(GROUP_NAMES))
    for i, row in enumerate(rows):
        values = [row.get(f"mAP_{g}", np.nan) for g in GROUP_NAMES]
        ax.bar(x + i * width, values, width=width, label=f"{row['method']}/{row['aggregator']}")
    ax.set_xticks(x + width * (len(rows) - 1) / 2, GROUP_NAMES)
    ax.set_ylabel(f"{split} mAP")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_sweep(rows: Sequence[Mapping[str, Any]], metric: str = "mAP", ax: Any = None) -> Any:
    """One line per method: ``metric`` against the imbalance ratio (log x), from
    :func:`vltr.analysis.tables.sweep_table` rows."""
    ax = _axes(ax)
    rows = [r for r in rows if r["imbalance_ratio"] is not None]
    names: list[str] = []
    for r in rows:
        names += [k for k in r if k != "imbalance_ratio" and k not in names]
    for name in names:
        pts = sorted((r["imbalance_ratio"], r[name]) for r in rows if r.get(name) is not None)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("imbalance ratio (n_min / n_max)")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")  # inside: notebooks put two of these side by side
    return ax


def plot_ap_vs_count_pair(
    run_a: RunResult, run_b: RunResult, split: str = "test", axes: Any = None
) -> Any:
    """Three panels: per-class AP against training count for run A, for run B (same axes,
    coloured by group), and AP(B) - AP(A) per class: where B gains and where it loses."""
    if axes is None:
        import matplotlib.pyplot as plt

        axes = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True)[1]
    rows = [load_per_class(r, split) for r in (run_a, run_b)]
    counts = np.array([r["train_count"] for r in rows[0]])
    groups = np.array([r["group"] for r in rows[0]])
    ap = [np.array([r["ap"] for r in rs]) for rs in rows]
    for ax, run, values in zip(axes[:2], (run_a, run_b), ap, strict=True):
        for g in GROUP_NAMES:
            sel = groups == g
            ax.scatter(counts[sel], values[sel], s=14, color=GROUP_COLORS[g], label=g)
        ax.set_title(f"{run.label}/{run.aggregator}: mAP {values.mean():.3f}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{split} AP")
    diff = ap[1] - ap[0]
    axes[2].axhline(0, color="grey", lw=0.8)
    for g in GROUP_NAMES:
        sel = groups == g
        axes[2].scatter(counts[sel], diff[sel], s=14, color=GROUP_COLORS[g], label=g)
    axes[2].set_title(f"{run_b.label} - {run_a.label}")
    axes[2].set_ylabel("AP difference")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training videos of the class")
    axes[0].legend(fontsize="small")
    return axes


def plot_group_confusion(
    confusion: Mapping[str, Mapping[str, float]], ax: Any = None, title: str = ""
) -> Any:
    """Stacked bars, one per true group (a video's rarest label): the share of its videos
    whose top-1 prediction is correct, or wrong and of each group
    (:func:`vltr.analysis.predictions.group_confusion`)."""
    ax = _axes(ax)
    parts = ("correct", *GROUP_NAMES)
    colors = {"correct": "tab:green", **{g: GROUP_COLORS[g] for g in GROUP_NAMES}}
    bottom = np.zeros(len(GROUP_NAMES))
    for part in parts:
        values = np.array([confusion[g][part] for g in GROUP_NAMES], dtype=float)
        label = part if part == "correct" else f"wrong: {part} class"
        ax.bar(
            GROUP_NAMES,
            np.nan_to_num(values),
            bottom=bottom,
            color=colors[part],
            alpha=1.0 if part == "correct" else 0.55,
            label=label,
        )
        bottom += np.nan_to_num(values)
    ax.set_ylim(0, 1)
    ax.set_xlabel("group of the video (its rarest label)")
    ax.set_ylabel("share of videos (top-1)")
    if title:
        ax.set_title(title)
    return ax
