"""Every method against BCE on the same aggregator, head and schedule, with the papers' ablations,
on the embedded synthetic dataset: each row is 3 seeds, mean ± std, test split of the
best-on-val checkpoint. Writes ``docs/results_synthetic.md`` and the README's results block.

Tables (one schedule for every row of every table: ``--epochs`` epochs, Adam ``--lr``, x0.1 at
3/4 of the epochs; MEID: each of its two stages):

* image-LT strategies on the non-linear baseline (linear head) and on MOVE's dual aggregator
  (VideoLT's non-linear head, MOVE's architecture);
* FrameStack: eta in {0.25, 0.5, 0.75}, rAP-adaptive beta vs a fixed 0.5 (controls: BCE and
  focal, FrameStack's loss, on the same aggregator);
* MOVE, its Table 4 layout: BCE on the non-linear / PSA / NetVLAD / dual aggregators, then
  MOVE's parts on the dual aggregator (extrapolation only, interpolation only, without the
  dynamic frame sampler, without calibration, full);
* MEDC: all three experts, each expert alone, without the sorting loss, without the region
  loss (control: BCE on its per-frame encoder, the non-linear aggregator);
* MEID: stage 1, stages 1+2, without distillation, without complementary frames, without
  motion (control: BCE on its frame-attention aggregator).

Runs go to ``--runs-dir/<table>/<row>/seed<k>/`` (a ``vltr-train`` output directory each);
a run whose ``metrics.json`` exists is not run again, so an interrupted invocation resumes with
``--runs-dir`` of the first. ``--jobs`` runs in parallel, one torch thread each (measured: two
single-thread runs beat one two-thread run on 2 cores for these small models).

    .venv/bin/python scripts/ablations.py                 # everything (README states the time)
    .venv/bin/python scripts/ablations.py --only move,medc --seeds 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vltr.utils.io import write_text_atomic  # noqa: E402

COLUMNS = (
    ("mAP", "All"),
    ("mAP_head", "Head"),
    ("mAP_medium", "Medium"),
    ("mAP_tail", "Tail"),
    ("acc1", "Acc@1"),
)

# sizes for the 64-d synthetic frames (paper sizes: non-linear hidden 2048, dual aggregator
# 1024 + 1024 and 64 clusters, MEID attention 1024, MEDC d = 1024): at paper size a run takes
# ~10x longer for a 4,096-d codebook of 64-d frames
NONLINEAR = ["aggregator=nonlinear", "aggregator.hidden_dim=256"]
PSA = ["aggregator=psa"]
NETVLAD = ["aggregator=netvlad", "aggregator.num_clusters=16", "aggregator.hidden_dim=256"]
MOVE_DUAL = [
    "aggregator=move_dual",
    "aggregator.attentive_dim=256",
    "aggregator.codebook_dim=256",
    "aggregator.num_clusters=16",
]
FRAME_ATTENTION = [
    "aggregator=frame_attention",
    "aggregator.embed_dim=256",
    "aggregator.attention_dim=256",
]
LINEAR_HEAD = ["head=linear"]
NONLINEAR_HEAD = ["head=nonlinear", "head.hidden_dim=256"]
STRATEGIES = ["bce", "focal", "ldam_drw", "eql", "cb_loss", "cbs", "srs", "mixup"]
MEDC = ["method=medc", *NONLINEAR, *LINEAR_HEAD, "method.embed_dim=128"]
MEID = ["method=meid", "strategy=focal", *FRAME_ATTENTION, *LINEAR_HEAD, "dataset.clip_frames=60"]
MOVE = ["method=move", "strategy=bce", *MOVE_DUAL, *NONLINEAR_HEAD]


@dataclass(frozen=True)
class Row:
    table: str
    name: str
    overrides: list[str] = field(default_factory=list)
    control: str | None = None  # the row (same table) this one is compared with


def rows() -> list[Row]:
    out: list[Row] = []
    for s in STRATEGIES:
        out.append(
            Row(
                "strategies",
                f"{s} / nonlinear",
                [f"strategy={s}", *NONLINEAR, *LINEAR_HEAD],
                None if s == "bce" else "bce / nonlinear",
            )
        )
    # the baseline with its output biases started at the label frequencies (MEDC's experts
    # start that way): how much of a method's gain over BCE is the initialisation
    out.append(
        Row(
            "strategies",
            "bce / nonlinear with prior bias init",
            ["strategy=bce", *NONLINEAR, *LINEAR_HEAD, "head.prior_bias_init=true"],
            "bce / nonlinear",
        )
    )
    for s in STRATEGIES:
        out.append(
            Row(
                "strategies",
                f"{s} / move_dual",
                [f"strategy={s}", *MOVE_DUAL, *NONLINEAR_HEAD],
                None if s == "bce" else "bce / move_dual",
            )
        )
    fs = ["method=framestack", "strategy=focal", *NONLINEAR, *LINEAR_HEAD]
    out += [
        Row("framestack", "bce", ["strategy=bce", *NONLINEAR, *LINEAR_HEAD]),
        Row("framestack", "focal", ["strategy=focal", *NONLINEAR, *LINEAR_HEAD], "bce"),
        Row("framestack", "framestack eta=0.25", [*fs, "method.eta=0.25"], "focal"),
        Row("framestack", "framestack eta=0.5", [*fs, "method.eta=0.5"], "focal"),
        Row("framestack", "framestack eta=0.75", [*fs, "method.eta=0.75"], "focal"),
        Row(
            "framestack",
            "framestack eta=0.5 fixed beta=0.5",
            [*fs, "method.eta=0.5", "method.fixed_beta=0.5"],
            "framestack eta=0.5",
        ),
    ]
    out += [
        Row("move", "(a) bce / nonlinear", ["strategy=bce", *NONLINEAR, *NONLINEAR_HEAD]),
        Row("move", "(b) bce / psa", ["strategy=bce", *PSA, *NONLINEAR_HEAD]),
        Row("move", "(c) bce / netvlad", ["strategy=bce", *NETVLAD, *NONLINEAR_HEAD]),
        Row("move", "(d) bce / move_dual", ["strategy=bce", *MOVE_DUAL, *NONLINEAR_HEAD]),
        Row(
            "move",
            "(e) + extrapolation (DFS)",
            [*MOVE, "method.interpolation=false"],
            "(d) bce / move_dual",
        ),
        Row(
            "move",
            "(f) + calibrated interpolation",
            [*MOVE, "method.frame_sampler=none", "method.extrapolation=false"],
            "(d) bce / move_dual",
        ),
        Row(
            "move",
            "(g) MOVE without DFS (uniform view sizes)",
            [*MOVE, "method.frame_sampler=uniform"],
            "(g) MOVE",
        ),
        Row(
            "move", "(g) MOVE without calibration", [*MOVE, "method.calibration=false"], "(g) MOVE"
        ),
        Row("move", "(g) MOVE", MOVE, "(d) bce / move_dual"),
        # MOVE's own learning rate (appendix: Adam 1e-3) with its BCE control at that rate
        Row(
            "move",
            "(d) bce / move_dual at lr 1e-3",
            ["strategy=bce", *MOVE_DUAL, *NONLINEAR_HEAD, "schedule.optimizer.lr=1e-3"],
        ),
        Row(
            "move",
            "(g) MOVE at lr 1e-3",
            [*MOVE, "schedule.optimizer.lr=1e-3"],
            "(d) bce / move_dual at lr 1e-3",
        ),
    ]
    out += [
        Row("medc", "bce / nonlinear", ["strategy=bce", *NONLINEAR, *LINEAR_HEAD]),
        # BCE on MEDC's own architecture (one expert's Gaussian embedding head over the shared
        # encoder, natural data, no sorting or region loss): what the architecture gives alone
        Row(
            "medc",
            "BCE on one MEDC expert",
            [*MEDC, "method.experts=[long_tailed]", "method.lambda_mu=0", "method.lambda_sigma=0"],
            "bce / nonlinear",
        ),
        Row(
            "medc",
            "BCE on one MEDC expert without prior bias init",
            [
                *MEDC,
                "method.experts=[long_tailed]",
                "method.lambda_mu=0",
                "method.lambda_sigma=0",
                "method.prior_bias_init=false",
            ],
            "BCE on one MEDC expert",
        ),
        Row(
            "medc",
            "MEDC long-tailed expert only",
            [*MEDC, "method.experts=[long_tailed]"],
            "bce / nonlinear",
        ),
        Row(
            "medc",
            "MEDC uniform expert only",
            [*MEDC, "method.experts=[uniform]"],
            "bce / nonlinear",
        ),
        Row(
            "medc",
            "MEDC inverse expert only",
            [*MEDC, "method.experts=[inverse]"],
            "bce / nonlinear",
        ),
        Row("medc", "MEDC without sorting loss", [*MEDC, "method.lambda_mu=0"], "MEDC"),
        Row("medc", "MEDC without region loss", [*MEDC, "method.lambda_sigma=0"], "MEDC"),
        Row("medc", "MEDC", MEDC, "bce / nonlinear"),
    ]
    out += [
        Row(
            "meid",
            "bce / frame_attention",
            ["strategy=bce", *FRAME_ATTENTION, *LINEAR_HEAD, "dataset.clip_frames=60"],
        ),
        # MEID's own loss on its expert-1 architecture, one stage: the control for MEID
        Row(
            "meid",
            "focal / frame_attention",
            ["strategy=focal", *FRAME_ATTENTION, *LINEAR_HEAD, "dataset.clip_frames=60"],
            "bce / frame_attention",
        ),
        Row(
            "meid",
            "MEID stage 1",
            [*MEID, "method.stages=[{method:{stage:1}}]"],
            "focal / frame_attention",
        ),
        # stage 1 without eq. 13's distillation term: the control's model, trained the MEID way
        Row(
            "meid",
            "MEID stage 1 without distillation",
            [*MEID, "method.stages=[{method:{stage:1}}]", "method.distill_weight=0"],
            "MEID stage 1",
        ),
        Row(
            "meid",
            "MEID stage 1 at distillation weight 0.01",
            [*MEID, "method.stages=[{method:{stage:1}}]", "method.distill_weight=0.01"],
            "MEID stage 1",
        ),
        Row("meid", "MEID without distillation", [*MEID, "method.distill_weight=0"], "MEID"),
        Row(
            "meid",
            "MEID without complementary frames",
            [*MEID, "method.complementary=false"],
            "MEID",
        ),
        Row("meid", "MEID without motion", [*MEID, "method.use_motion=false"], "MEID"),
        Row("meid", "MEID", MEID, "focal / frame_attention"),
    ]
    return out


# the README's summary: each method's full row against its control (same aggregator, head and
# schedule), (table, row)
HEADLINES = [
    ("strategies", "bce / nonlinear with prior bias init"),
    ("strategies", "ldam_drw / nonlinear"),
    ("strategies", "cbs / move_dual"),
    ("framestack", "framestack eta=0.5"),
    ("move", "(g) MOVE"),
    ("move", "(g) MOVE at lr 1e-3"),
    ("medc", "MEDC"),
    ("medc", "BCE on one MEDC expert"),
    ("meid", "MEID"),
]

TABLE_TITLES = {
    "strategies": "Image-LT strategies on the non-linear baseline (linear head) and on MOVE's "
    "dual aggregator (non-linear head)",
    "framestack": "FrameStack (non-linear aggregator, linear head)",
    "move": "MOVE, Table 4 layout (non-linear head on every aggregator)",
    "medc": "MEDC (per-frame encoder = the non-linear aggregator's)",
    "meid": "MEID (frame-attention aggregator, linear head)",
}


def job_overrides(row: Row, seed: int, epochs: int, lr: float, out: Path) -> list[str]:
    # schedule=synthetic: Adam, x0.1 at 75 % of the epochs, for every row
    return [
        "dataset=synthetic",
        "features=synthetic",
        "schedule=synthetic",
        *row.overrides,
        f"seed={seed}",
        f"trainer.max_epochs={epochs}",
        # a row may set its own learning rate (MOVE's paper lr against BCE at the same lr)
        *(
            []
            if any(o.startswith("schedule.optimizer.lr=") for o in row.overrides)
            else [f"schedule.optimizer.lr={lr}"]
        ),
        "logger=csv",
        # in-process loading: the job is one single-thread process (pool workers are
        # daemons, which may not start DataLoader workers)
        "dataset.num_workers=0",
        "trainer.enable_progress_bar=false",
        "callbacks.model_checkpoint.save_last=false",
        f"paths.root_dir={ROOT}",
        f"hydra.run.dir={out}",
    ]


def out_name(overrides: tuple[str, ...]) -> str:
    return " ".join(o for o in overrides if not o.startswith(("aggregator.", "head.")))


def _run_job(
    args: tuple[tuple[str, ...], list[str], str],
) -> tuple[tuple[str, ...], dict | None, float, str]:
    """One ``vltr-train`` run in this worker process (composed as the CLI composes it)."""
    key, overrides, out = args
    import logging

    import torch
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from vltr.training.train import train

    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    t0 = time.time()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="vltr.conf", version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
            del cfg["hydra"]
        train(cfg)
        metrics = json.loads((out_dir / "metrics.json").read_text())
        return key, metrics, time.time() - t0, ""
    except BaseException:  # noqa: BLE001 - a failed row is reported, the others go on
        error = traceback.format_exc()
        (out_dir / "error.txt").write_text(error)
        return key, None, time.time() - t0, error.strip().splitlines()[-1]


def fmt(values: list[float]) -> str:
    if not values:
        return "—"  # not run (yet), or failed: the log says which
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(section: str, rows_: list[Row], results: dict[str, list[dict]]) -> str:
    head = "| row | " + " | ".join(t for _, t in COLUMNS) + " | Δ tail vs | n |"
    lines = [f"### {TABLE_TITLES[section]}", "", head, "|" + "---|" * (len(COLUMNS) + 3)]
    for row in rows_:
        runs = results.get(f"{row.table}/{row.name}", [])
        cells = [fmt([r[k] for r in runs]) for k, _ in COLUMNS]
        delta = ""
        if row.control is not None:
            ctrl = results.get(f"{row.table}/{row.control}", [])
            if runs and ctrl:
                d = statistics.mean(r["mAP_tail"] for r in runs) - statistics.mean(
                    r["mAP_tail"] for r in ctrl
                )
                delta = f"{d:+.3f} ({row.control})"
        lines.append(f"| {row.name} | " + " | ".join(cells) + f" | {delta} | {len(runs)} |")
    return "\n".join(lines)


def summary(rows_: list[Row], results: dict[str, list[dict]]) -> str:
    """Each headline row against its control: tail and overall mAP, mean ± std over seeds."""
    by_key = {f"{r.table}/{r.name}": r for r in rows_}
    lines = [
        "| method | control (same aggregator, head, schedule) | All | Tail | control All "
        "| control Tail | Δ tail | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for table_, name in HEADLINES:
        row = by_key.get(f"{table_}/{name}")
        if row is None or row.control is None:
            continue
        runs = results.get(f"{table_}/{name}", [])
        ctrl = results.get(f"{table_}/{row.control}", [])
        if not runs or not ctrl:
            continue
        d = statistics.mean(r["mAP_tail"] for r in runs) - statistics.mean(
            r["mAP_tail"] for r in ctrl
        )
        lines.append(
            f"| {name} | {row.control} | {fmt([r['mAP'] for r in runs])} | "
            f"{fmt([r['mAP_tail'] for r in runs])} | {fmt([r['mAP'] for r in ctrl])} | "
            f"{fmt([r['mAP_tail'] for r in ctrl])} | {d:+.3f} | {len(runs)} / {len(ctrl)} |"
        )
    return "\n".join(lines)


def replace_block(path: Path, text: str, name: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not path.is_file():
        print(f"ablations: no {path}; left as it is", file=sys.stderr)
        return
    content = path.read_text()
    if start not in content or end not in content:
        print(f"ablations: {path} has no {start} ... {end} block; left unchanged", file=sys.stderr)
        return
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    write_text_atomic(path, f"{before}{start}\n{text}\n{end}{after}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated tables: " + ",".join(TABLE_TITLES))
    p.add_argument("--rows", default="", help="comma-separated row names (within --only)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--seed-from",
        type=int,
        default=0,
        help="run seeds seed-from .. seeds-1 only (e.g. more seeds for some rows)",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument(
        "--runs-dir",
        default=None,
        help="default: logs/ablations/<time>; pass an earlier one to resume it",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs to do and stop")
    p.add_argument(
        "--report",
        action="store_true",
        help="run nothing: write the tables of the runs done so far (rows with "
        "fewer seeds show their n) into --out and the README, whatever the "
        "selection",
    )
    p.add_argument("--out", default=str(ROOT / "docs" / "results_synthetic.md"))
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    args = p.parse_args()
    only = set(filter(None, args.only.split(",")))
    names = set(filter(None, args.rows.split(",")))
    unknown = only - set(TABLE_TITLES)
    if unknown:
        p.error(f"unknown table(s) {sorted(unknown)}; choose from {list(TABLE_TITLES)}")
    selected = [
        r for r in rows() if (not only or r.table in only) and (not names or r.name in names)
    ]
    runs_dir = Path(args.runs_dir or ROOT / "logs" / "ablations" / time.strftime("%Y-%m-%d_%H-%M"))
    # rows with the same overrides (a control shared by two tables) are run once
    runs: dict[tuple[str, ...], list[dict]] = {}
    results: dict[str, list[dict]] = {}
    jobs, done = [], 0
    for row in selected:
        same = tuple(row.overrides)
        results[f"{row.table}/{row.name}"] = runs.setdefault(same, [])
        if any(j[0] == same for j in jobs) or len(runs[same]) > 0:
            continue
        # a run's directory is named by its overrides, so any selection of tables finds it
        digest = hashlib.sha1("\n".join(same).encode()).hexdigest()[:8]
        slug = "".join(c if c.isalnum() or c in "-." else "_" for c in row.name)
        earlier = sorted(runs_dir.glob(f"*-{digest}"))
        run_dir = earlier[0] if earlier else runs_dir / f"{slug}-{digest}"
        for seed in range(args.seeds):
            out = run_dir / f"seed{seed}"
            if seed < args.seed_from and not (out / "metrics.json").is_file():
                continue
            if (out / "metrics.json").is_file():
                runs[same].append(json.loads((out / "metrics.json").read_text())["test"])
                done += 1
                continue
            jobs.append((same, job_overrides(row, seed, args.epochs, args.lr, out), str(out)))
    print(
        f"ablations: {len(jobs)} runs to do ({done} already done) in {runs_dir}, "
        f"{args.jobs} at a time",
        file=sys.stderr,
        flush=True,
    )
    if args.dry_run:
        for _, overrides, out in jobs:
            print(out, " ".join(overrides))
        return 0
    if args.report:
        jobs = []
    t0 = time.time()
    failed = 0
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=8) as pool:
        for i, (key, metrics, seconds, error) in enumerate(pool.imap_unordered(_run_job, jobs), 1):
            if metrics is None:
                failed += 1
                print(
                    f"  [{i}/{len(jobs)}] {out_name(key)}: FAILED ({error})",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            runs[key].append(metrics["test"])
            print(
                f"  [{i}/{len(jobs)}] {out_name(key)}: tail {metrics['test']['mAP_tail']:.3f} "
                f"({seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    minutes = (time.time() - t0) / 60
    sections = [s for s in TABLE_TITLES if any(r.table == s for r in selected)]
    body = "\n\n".join(table(s, [r for r in selected if r.table == s], results) for s in sections)
    try:
        where = f"runs in `{runs_dir.relative_to(ROOT)}`."
    except ValueError:  # a directory outside the checkout means nothing to a reader
        where = "runs kept outside the repository (`--runs-dir`)."
    header = (
        f"Embedded synthetic dataset (60 classes, imbalance 0.01, 64-d frames), "
        f"`scripts/ablations.py`: {args.epochs} epochs for every row (MEID: each of its "
        f"two stages), Adam lr {args.lr:g} x0.1 at epoch {max(1, args.epochs * 3 // 4)}, "
        f"seeds 0-{args.seeds - 1} (mean ± std), test split of the best-on-val "
        f"checkpoint; Δ tail = mean tail mAP minus the named control row's. "
        + (
            ""
            if args.report
            else f"{len(jobs)} runs took {minutes:.0f} min ({args.jobs} at a time, 2 CPU cores); "
        )
        + where
    )
    text = header + "\n\n" + body
    short = summary(selected, results)
    if (not only and not names) or args.report:
        tables = header + "\n\n### Summary\n\n" + short + "\n\n" + body
        out = Path(args.out)
        if out.is_file() and "<!-- tables:start -->" in out.read_text():
            replace_block(out, tables, "tables")  # the page's own text around it stays
        else:
            write_text_atomic(
                out,
                "# Results on the synthetic dataset\n\n<!-- tables:start -->\n"
                + tables
                + "\n<!-- tables:end -->\n",
            )
        replace_block(Path(args.readme), header + "\n\n" + short, "results")
    else:
        print("ablations: a subset was run; docs and README left unchanged", file=sys.stderr)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
