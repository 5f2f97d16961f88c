"""vltr-report: the papers' tables from finished runs, paired comparisons, the W&B workspace.

Reads each run's files (metrics.json, per_class_ap_<split>.csv, predictions_<split>.npz),
never W&B.

* table (the default): one row per method (All / Head / Medium / Tail mAP, Acc@1, Acc@5;
  mean ± std over seeds and n), and, when the runs span several imbalance ratios, an
  imbalance-ratio x method table per --metric. Runs are averaged only when they differ in the
  seed alone; runs that differ in anything else get a row each, named by what differs, and a
  warning says so.
* compare A B: paired bootstrap over the test videos of B minus A (mAP, head, medium and tail
  mAP) with a 95 % interval; each side is one run or several seeds of one setting.
* dashboard: the W&B workspace (H/M/T mAP curves by method, AP vs training count, imbalance-
  ratio panels), built in code; printed, and created in W&B with --save.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vltr.analysis.report import compare_runs, report_tables
from vltr.analysis.runs import find_run_dirs
from vltr.cli.common import user_errors
from vltr.utils.errors import ConfigError
from vltr.utils.help import help_formatter, paragraphs
from vltr.utils.io import write_text_atomic

PROG = "vltr-report"
KNOWN_METRICS = ("mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5")
COMMANDS = ("table", "compare", "dashboard")


# ---------------------------------------------------------------------------------- commands
def cmd_table(args: argparse.Namespace) -> int:
    metrics = args.metrics or ["mAP", "mAP_tail"]
    bad = [m for m in metrics if m not in KNOWN_METRICS]
    if bad:
        raise ConfigError(f"--metric {bad[0]}: unknown (choose from {', '.join(KNOWN_METRICS)})")
    text, csvs, warnings = report_tables(args.paths, args.split, metrics)
    if args.out:
        out = Path(args.out)
        write_text_atomic(out / "report.md", text)
        for name, body in csvs.items():
            write_text_atomic(out / name, body)
    print(text, end="")
    for line in warnings:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.resamples < 1:
        raise ConfigError(f"--resamples must be >= 1, got {args.resamples}")
    if not 0 < args.confidence < 1:
        raise ConfigError(f"--confidence must be in (0, 1), got {args.confidence}")
    text, csv_text = compare_runs(
        args.a,
        args.b,
        args.split,
        args.resamples,
        args.confidence,
        args.seed,
        progress=not args.quiet,
    )
    if args.out:
        write_text_atomic(Path(args.out) / "compare.md", text)
        write_text_atomic(Path(args.out) / "compare.csv", csv_text)
    print(text, end="")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from vltr.analysis.dashboard import build_workspace, describe_workspace

    workspace = build_workspace(args.entity, args.project, args.name, args.group, args.tag or ())
    print(describe_workspace(workspace))
    if args.save:
        workspace.save()  # network: creates the workspace in the W&B project
        print(f"saved: {workspace.url}")
    else:
        print("(not saved: add --save to create it in W&B; needs network and `wandb login`)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = help_formatter()
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=fmt,
        description=paragraphs(
            "Tables, paired comparisons and the W&B workspace from finished runs (their "
            "metrics.json and per-class / per-video files; never W&B).",
            "Without a command, the table command is run: vltr-report PATH ... is "
            "vltr-report table PATH ....",
        ),
        epilog="examples:\n"
        "  vltr-report logs/train/multiruns/2026-01-01_10-00-00-000000\n"
        "  vltr-report table RUN_A RUN_B --split val --metric mAP --metric mAP_tail\n"
        "  vltr-report compare logs/sweeps/grid/0 logs/sweeps/grid/1\n"
        "  vltr-report dashboard --entity my-team --project vltr --group grid\n\n"
        "vltr-report COMMAND --help describes each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "table",
        formatter_class=fmt,
        help="the papers' tables (the default command)",
        description=paragraphs(
            "One row per method: All / Head / Medium / Tail mAP, Acc@1, Acc@5 of the "
            "best-on-val checkpoints, mean ± std over seeds and n.",
            "Runs are averaged only when they differ in the seed alone (config choices and "
            "command-line overrides compared); others get a row each, with a settings column "
            "naming what differs, and a warning.",
            "When the runs span several imbalance ratios, one ratio x method table per "
            "--metric follows.",
        ),
        epilog="examples:\n"
        "  vltr-report logs/                                  every run under logs/\n"
        "  vltr-report table SWEEP_DIR --out reports/grid     also report.md and CSV files\n"
        "  vltr-report table SWEEP_DIR --metric acc1 --split val",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run directories, multirun directories or folders above them",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=("val", "test"),
        help="which split's metrics (default: test)",
    )
    p.add_argument(
        "--metric",
        action="append",
        dest="metrics",
        metavar="METRIC",
        help="metric of the imbalance-ratio tables, repeatable: "
        f"{', '.join(KNOWN_METRICS)} (default: mAP and mAP_tail)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="also write report.md, methods.csv and sweep_<metric>.csv there",
    )
    p.set_defaults(handler=cmd_table)

    p = sub.add_parser(
        "compare",
        formatter_class=fmt,
        help="paired bootstrap of B - A over the test videos",
        description=paragraphs(
            "Is B better than A on this test set? Both sides are scored on the same bootstrap "
            "resamples of the test videos (from each run's predictions_<split>.npz); the table "
            "gives B - A for mAP and head / medium / tail mAP with its interval.",
            "A side with several runs (seeds of one setting) is averaged on every resample; "
            "runs of one side that differ in more than the seed are refused.",
        ),
        epilog="examples:\n"
        "  vltr-report compare logs/train/runs/BCE_RUN logs/train/runs/LDAM_RUN\n"
        "  vltr-report compare --a SWEEP/0 SWEEP/2 --b SWEEP/1 SWEEP/3   seeds on each side\n"
        "  vltr-report compare A_RUN B_RUN --resamples 5000 --out reports/ldam_vs_bce",
    )
    p.add_argument(
        "runs", nargs="*", metavar="RUN", help="two run directories: A (the baseline) then B"
    )
    p.add_argument("--a", nargs="+", metavar="RUN", help="side A's runs (instead of RUN RUN)")
    p.add_argument("--b", nargs="+", metavar="RUN", help="side B's runs (instead of RUN RUN)")
    p.add_argument(
        "--split",
        default="test",
        choices=("val", "test"),
        help="the split whose predictions are compared (default: test)",
    )
    p.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)"
    )
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="resampling seed (default: 0)")
    p.add_argument("--out", metavar="DIR", help="also write compare.md and compare.csv there")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser(
        "dashboard",
        formatter_class=fmt,
        help="the W&B workspace, built in code",
        description=paragraphs(
            "Build the W&B workspace for vltr runs: val H/M/T mAP curves grouped by method "
            "(mean ± std over seeds), test H/M/T bars by method, test mAP and tail mAP against "
            "the imbalance ratio, AP against training count per class.",
            "Prints its sections and panels; --save creates it in the project (network and a "
            "W&B login needed; upload offline runs first with wandb sync).",
        ),
        epilog="examples:\n"
        "  vltr-report dashboard --entity my-team                     print the panels\n"
        "  vltr-report dashboard --entity my-team --group grid --save  create it in W&B\n"
        "  vltr-report dashboard --entity me --tag ir:0.01 --tag dataset:videolt",
    )
    p.add_argument("--entity", required=True, help="W&B entity (user or team) owning it")
    p.add_argument(
        "--project", default="vltr", help="W&B project (default: vltr, as logger=wandb logs)"
    )
    p.add_argument("--name", default="vltr: long-tail", help="workspace name")
    p.add_argument("--group", help="only runs of this W&B group (a sweep directory's name)")
    p.add_argument(
        "--tag",
        action="append",
        metavar="TAG",
        help="only runs with this tag, repeatable (ir:0.01, dataset:videolt, ...)",
    )
    p.add_argument("--save", action="store_true", help="create the workspace in W&B")
    p.set_defaults(handler=cmd_dashboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "table")  # vltr-report PATH ...: the table command
    args = build_parser().parse_args(argv)
    with user_errors(PROG):
        if args.command == "compare":
            if args.runs and (args.a or args.b):
                raise ConfigError("compare: give RUN_A RUN_B, or --a ... --b ..., not both")
            if not (args.a or args.b):
                if len(args.runs) != 2:
                    raise ConfigError(
                        f"compare: expected two runs (A then B), got {len(args.runs)}"
                    )
                args.a, args.b = [args.runs[0]], [args.runs[1]]
            elif not (args.a and args.b):
                raise ConfigError("compare: give both --a and --b")
            for path in (*args.a, *args.b):
                find_run_dirs([path])  # a missing path: one line
        return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
