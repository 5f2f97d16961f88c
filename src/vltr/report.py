"""``vltr-report PATH...``: the papers' tables from finished runs and sweeps.

Reads each run's ``metrics.json`` (never W&B): one row per method (All / Head / Medium / Tail
mAP, Acc@1, Acc@5; seeds averaged) and, when the runs span several imbalance ratios, an
imbalance-ratio x method table per ``--metric``. Prints Markdown; with ``--out DIR`` also
writes ``report.md``, ``methods.csv`` and ``sweep_<metric>.csv`` there (atomically).

    vltr-report logs/train/multiruns/2026-11-22_10-00-00-000000
    vltr-report RUN_A RUN_B --split val --metric mAP --metric mAP_tail --out reports/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vltr.analysis.runs import load_runs
from vltr.analysis.tables import method_table, sweep_table, to_csv, to_markdown
from vltr.cli import user_errors
from vltr.errors import ConfigError
from vltr.io import write_text_atomic


def build_report(paths: Sequence[str], split: str = "test",
                 metrics: Sequence[str] = ("mAP", "mAP_tail")) -> tuple[str, dict[str, str]]:
    """``(markdown, {csv file name: csv text})`` for the runs under ``paths``."""
    runs = load_runs(paths)
    methods = method_table(runs, split)
    parts = [f"## Methods ({split} split, best-on-val checkpoints; {len(runs)} runs)",
             "", to_markdown(methods, "methods")]
    csvs = {"methods.csv": to_csv(methods)}
    failed = [r for r in runs if r.failed]
    if len({r.imbalance_ratio for r in runs}) > 1:
        for metric in metrics:
            rows = sweep_table(runs, metric, split)
            parts += ["", f"## {metric} by imbalance ratio ({split})", "",
                      to_markdown(rows, "sweep")]
            csvs[f"sweep_{metric}.csv"] = to_csv(rows)
    if failed:
        parts += ["", "## Failed runs", ""]
        parts += [f"- `{r.path}`: {r.error}" for r in failed]
    return "\n".join(parts) + "\n", csvs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vltr-report", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="run directories, multirun directories or folders "
                   "above them")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--metric", action="append", dest="metrics",
                   help="metric of the imbalance-ratio tables (repeatable; default mAP and "
                   "mAP_tail)")
    p.add_argument("--out", help="directory for report.md and the CSV files")
    args = p.parse_args(argv)
    metrics = args.metrics or ["mAP", "mAP_tail"]
    known = ("mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5")
    with user_errors("vltr-report"):
        bad = [m for m in metrics if m not in known]
        if bad:
            raise ConfigError(f"--metric {bad[0]}: unknown (choose from {', '.join(known)})")
        text, csvs = build_report(args.paths, args.split, metrics)
        if args.out:
            out = Path(args.out)
            write_text_atomic(out / "report.md", text)
            for name, body in csvs.items():
                write_text_atomic(out / name, body)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
