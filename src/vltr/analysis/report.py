"""The reports behind ``vltr-report``: the papers' tables for a set of runs (Markdown and CSV)
and the paired bootstrap comparison of two sides (runs or seeds of one setting)."""

from __future__ import annotations

from collections.abc import Sequence

from vltr.analysis.runs import RunResult, load_runs, predictions_path
from vltr.analysis.settings import distinguishing_settings
from vltr.analysis.tables import method_table, sweep_table, table_warnings, to_csv, to_markdown
from vltr.utils.errors import ConfigError, StoreError


def build_report(
    paths: Sequence[str], split: str = "test", metrics: Sequence[str] = ("mAP", "mAP_tail")
) -> tuple[str, dict[str, str]]:
    """``(markdown, {csv file name: csv text})`` for the runs under ``paths``."""
    text, csvs, _ = report_tables(paths, split, metrics)
    return text, csvs


def report_tables(
    paths: Sequence[str], split: str, metrics: Sequence[str]
) -> tuple[str, dict[str, str], list[str]]:
    """:func:`build_report` and the warnings about runs that were not averaged (settings that
    differ in more than the seed)."""
    runs = load_runs(paths)
    methods = method_table(runs, split)
    parts = [
        f"## Methods ({split} split, best-on-val checkpoints; {len(runs)} runs)",
        "",
        to_markdown(methods, "methods"),
    ]
    csvs = {"methods.csv": to_csv(methods)}
    failed = [r for r in runs if r.failed]
    if len({r.imbalance_ratio for r in runs}) > 1:
        for metric in metrics:
            rows = sweep_table(runs, metric, split)
            parts += [
                "",
                f"## {metric} by imbalance ratio ({split})",
                "",
                to_markdown(rows, "sweep"),
            ]
            csvs[f"sweep_{metric}.csv"] = to_csv(rows)
    warnings = table_warnings(runs)
    if warnings:
        parts += ["", "## Not averaged", ""]
        parts += [f"- {w}" for w in warnings]
    if failed:
        parts += ["", "## Failed runs", ""]
        parts += [f"- `{r.path}`: {r.error}" for r in failed]
    return "\n".join(parts) + "\n", csvs, warnings


# ------------------------------------------------------------------------------------ compare
def _side(paths: Sequence[str], name: str) -> list[RunResult]:
    runs = [r for r in load_runs(paths) if not r.failed]
    if not runs:
        raise StoreError(f"{name}: {', '.join(paths)}: no finished run")
    settings, _ = distinguishing_settings(runs, lambda r: name)
    differ = sorted({s for s in settings.values() if s})
    if len({r.label for r in runs}) > 1 or differ:
        what = differ[0] if differ else ", ".join(sorted({r.label for r in runs}))
        raise ConfigError(
            f"{name}: {len(runs)} runs differ in more than the seed ({what}): "
            "give one setting per side (its seeds are averaged)"
        )
    return runs


def _describe(runs: Sequence[RunResult]) -> str:
    r = runs[0]
    seeds = ", ".join(str(x.seed) for x in runs)
    return (
        f"{r.label}/{r.aggregator} ({len(runs)} run{'s' if len(runs) > 1 else ''}, "
        f"seed{'s' if len(runs) > 1 else ''} {seeds})"
    )


def compare_runs(
    a_paths: Sequence[str],
    b_paths: Sequence[str],
    split: str = "test",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> tuple[str, str]:
    """``(markdown, csv)``: the paired bootstrap of B - A (:mod:`vltr.analysis.bootstrap`)."""
    from vltr.analysis.bootstrap import paired_bootstrap
    from vltr.evaluation.predictions import load_predictions
    from vltr.utils.progress import PercentLines

    sides = [_side(a_paths, "A"), _side(b_paths, "B")]
    preds = [[load_predictions(predictions_path(r, split)) for r in side] for side in sides]
    lines = PercentLines("bootstrap", resamples, unit="resamples", every=10) if progress else None
    result = paired_bootstrap(
        preds[0],
        preds[1],
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        progress=None if lines is None else lambda done, total: lines.update(done),
    )
    level = f"{confidence:.0%}"
    out = [
        f"## Paired bootstrap: B - A ({split} split, {result.resamples:,} resamples of "
        f"the {result.num_videos:,} videos)",
        "",
        f"- A: {_describe(sides[0])}",
        f"- B: {_describe(sides[1])}",
        "",
        f"| metric | A | B | B - A | {level} interval | interval excludes 0 |",
        "|---|---|---|---|---|---|",
    ]
    csv_rows = []
    for d in result.differences:
        out.append(
            f"| {d.metric} | {d.a:.4f} | {d.b:.4f} | {d.diff:+.4f} | "
            f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}] | {'yes' if d.excludes_zero else 'no'} |"
        )
        csv_rows.append(
            {
                "metric": d.metric,
                "a": d.a,
                "b": d.b,
                "diff": d.diff,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "confidence": confidence,
                "resamples": resamples,
                "seed": seed,
            }
        )
    out += [
        "",
        "Each resample draws the test videos with replacement and scores both sides on "
        "the same draw; a class without a drawn positive is left out of that draw's means.",
    ]
    return "\n".join(out) + "\n", to_csv(csv_rows)
