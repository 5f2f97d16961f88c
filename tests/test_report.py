"""vltr.analysis and vltr-report: tables from run files, and a tiny sweep end to end."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from vltr.analysis import (
    find_run_dirs,
    load_per_class,
    load_run,
    load_runs,
    method_table,
    sweep_table,
    to_csv,
    to_markdown,
)
from vltr.analysis.report import build_report
from vltr.analysis.runs import latest_sweep
from vltr.analysis.tables import table_warnings
from vltr.utils.errors import StoreError

from conftest import run_cli

METRICS = ("mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5")


def fake_run(
    path: Path,
    strategy: str = "bce",
    aggregator: str = "nonlinear",
    method: str = "base",
    ir: float | None = None,
    seed: int = 0,
    value: float = 0.5,
    failed: bool = False,
    max_epochs: int | None = None,
    overrides: tuple[str, ...] = (),
    composed: str | None = None,
) -> Path:
    """A run directory as vltr-train leaves it (metrics.json's run block, or failed.json;
    ``composed``: its .hydra/config.yaml)."""
    path.mkdir(parents=True)
    if composed is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "config.yaml").write_text(composed)
    if failed:
        (path / "failed.json").write_text(json.dumps({"error": "StoreError: boom"}))
        (path / ".hydra").mkdir()
        (path / ".hydra" / "hydra.yaml").write_text(
            "hydra:\n  runtime:\n    choices:\n"
            f"      strategy: {strategy}\n      aggregator: {aggregator}\n"
            f"      method: {method}\n      dataset: synthetic\n      features: synthetic\n"
        )
        (path / ".hydra" / "config.yaml").write_text(
            f"seed: {seed}\ndataset:\n  imbalance_ratio: {'null' if ir is None else ir}\n"
        )
        return path
    metrics = {k: value + i / 100 for i, k in enumerate(METRICS)}
    run = {
        "dataset": "synthetic",
        "features": "synthetic",
        "aggregator": aggregator,
        "strategy": strategy,
        "method": method,
        "imbalance_ratio": ir,
        "seed": seed,
        "overrides": [*overrides, f"seed={seed}"],
    }
    if max_epochs is not None:
        run["max_epochs"] = max_epochs
    (path / "metrics.json").write_text(
        json.dumps({"run": run, "val": metrics, "test": {k: v / 2 for k, v in metrics.items()}})
    )
    return path


def test_labels_name_methods_and_method_strategies(tmp_path: Path) -> None:
    assert load_run(fake_run(tmp_path / "a", strategy="cbs")).label == "cbs"
    assert load_run(fake_run(tmp_path / "b", strategy="framestack")).label == "framestack"
    assert load_run(fake_run(tmp_path / "c", strategy="bce", method="medc")).label == "medc"


def test_seeds_are_averaged_with_their_spread(tmp_path: Path) -> None:
    runs = [
        load_run(fake_run(tmp_path / f"s{s}", seed=s, value=v)) for s, v in [(0, 0.4), (1, 0.6)]
    ]
    [row] = method_table(runs, "val")
    assert row["n"] == 2 and row["failed"] == 0
    assert row["mAP"] == pytest.approx(0.5)
    assert row["mAP_std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.4, 0.6
    assert "0.500 ± 0.141" in to_markdown([row])


def test_rows_separate_aggregators_and_count_failures(tmp_path: Path) -> None:
    runs = [
        load_run(fake_run(tmp_path / "a", aggregator="nonlinear", value=0.2)),
        load_run(fake_run(tmp_path / "b", aggregator="move_dual", value=0.6)),
        load_run(fake_run(tmp_path / "c", aggregator="move_dual", failed=True)),
    ]
    assert runs[2].failed and runs[2].aggregator == "move_dual"  # from .hydra/ of a failure
    rows = {r["aggregator"]: r for r in method_table(runs, "test")}
    assert rows["nonlinear"]["mAP"] == pytest.approx(0.1)
    assert rows["move_dual"]["mAP"] == pytest.approx(0.3)
    assert rows["move_dual"]["n"] == 1 and rows["move_dual"]["failed"] == 1


def test_sweep_table_is_ratio_by_method(tmp_path: Path) -> None:
    runs = []
    for ir in (0.1, 0.01):
        for k, strategy in enumerate(("bce", "move")):
            runs.append(
                load_run(
                    fake_run(tmp_path / f"{ir}-{strategy}", strategy=strategy, ir=ir, value=ir + k)
                )
            )
    runs.append(load_run(fake_run(tmp_path / "bad", strategy="move", ir=0.05, failed=True)))
    rows = sweep_table(runs, "mAP", "val")
    assert [r["imbalance_ratio"] for r in rows] == [0.01, 0.05, 0.1]
    assert rows[0]["bce"] == pytest.approx(0.01) and rows[0]["move"] == pytest.approx(1.01)
    assert rows[1]["move"] is None  # the failed job is a cell, shown as failed
    md = to_markdown(rows, "sweep")
    assert md.splitlines()[0] == "| imbalance ratio | bce | move |"
    assert "| 0.05 |  | failed |" in md
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert float(parsed[2]["move"]) == pytest.approx(1.1)


def test_sweep_jobs_in_numeric_order_and_empty_groups_shown_as_na(tmp_path: Path) -> None:
    for job in (2, 10, 1):
        fake_run(tmp_path / str(job), strategy=f"s{job}", value=float("nan") if job == 10 else 0.5)
    assert [p.name for p in find_run_dirs([tmp_path])] == ["1", "2", "10"]
    rows = method_table(load_runs([tmp_path]), "val")
    assert [r["method"] for r in rows] == ["s1", "s2", "s10"]
    assert "| s10 | nonlinear | n/a |" in to_markdown(rows)


def test_stage_directories_are_part_of_their_run(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "meid", method="meid")
    for k, ap in ((1, 0.25), (2, 0.75)):
        fake_run(run / f"stage{k}", method="meid")
        (run / f"stage{k}" / "per_class_ap_test.csv").write_text(
            f"class_index,class_name,train_count,group,ap\n0,c0,5,tail,{ap}\n"
        )
    assert find_run_dirs([tmp_path]) == [run]
    # the run's per-class AP is its last stage's
    assert [r["ap"] for r in load_per_class(load_run(run))] == [0.75]


def test_missing_path_and_empty_folder_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such run"):
        load_runs([tmp_path / "nope"])
    with pytest.raises(StoreError, match="no run found"):
        load_runs([tmp_path])
    proc = run_cli(["vltr-report", str(tmp_path / "nope")], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope" in proc.stderr


@pytest.mark.e2e
def test_tiny_sweep_report(tiny_sweep: Path, tmp_path: Path) -> None:
    jobs = sorted(p for p in tiny_sweep.iterdir() if p.is_dir())
    assert len(jobs) == 6  # one directory per job
    done = [j for j in jobs if (j / "metrics.json").is_file()]
    assert len(done) == 4 and all((j / ".hydra" / "config.yaml").is_file() for j in done)
    assert all((j / "per_class_ap_test.csv").is_file() for j in done)
    failed = [j for j in jobs if (j / "failed.json").is_file()]
    assert len(failed) == 2

    runs = load_runs([tiny_sweep])
    by_key = {(r.strategy, r.imbalance_ratio): r for r in runs if not r.failed}
    assert set(by_key) == {(s, ir) for s in ("bce", "focal") for ir in (0.2, 1.0)}
    # the per-class file and metrics.json agree: the mean of the per-class AP is the mAP
    run = by_key[("bce", 0.2)]
    aps = [row["ap"] for row in load_per_class(run)]
    assert sum(aps) / len(aps) == pytest.approx(run.test["mAP"], abs=1e-5)

    out = tmp_path / "report"
    proc = run_cli(["vltr-report", str(tiny_sweep), "--out", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    assert proc.stdout == text
    assert "## mAP_tail by imbalance ratio (test)" in text and "## Failed runs" in text
    assert "## Not averaged" not in text and "settings" not in text  # one setting per row
    sweep_rows = list(csv.DictReader(open(out / "sweep_mAP.csv")))
    assert [r["imbalance_ratio"] for r in sweep_rows] == ["0.2", "1.0", "2.0"]
    assert float(sweep_rows[0]["focal"]) == pytest.approx(by_key[("focal", 0.2)].test["mAP"])
    assert sweep_rows[2]["bce"] == ""  # IR 2 failed for both strategies
    methods = list(csv.DictReader(open(out / "methods.csv")))
    assert len(methods) == 6  # (bce, focal) x (0.2, 1.0, failed 2.0)
    text2, _ = build_report([str(tiny_sweep)], split="val", metrics=["acc1"])
    assert "## acc1 by imbalance ratio (val)" in text2


def test_latest_sweep_is_the_newest_multirun_anywhere_under_logs(tmp_path: Path) -> None:
    import os

    with pytest.raises(StoreError, match="no multirun"):
        latest_sweep(tmp_path)
    for i, sub in enumerate(("logs/train/multiruns/a", "logs/ir_sweep", "logs/old")):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "multirun.yaml").write_text("{}")
        os.utime(tmp_path / sub / "multirun.yaml", (100 + i, 100 + (i if i < 2 else -50)))
    assert latest_sweep(tmp_path) == tmp_path / "logs" / "ir_sweep"


def test_runs_that_differ_in_more_than_the_seed_are_not_averaged(tmp_path: Path) -> None:
    # a 1-epoch and a 2-epoch run are not two seeds of one setting
    runs = [
        load_run(fake_run(tmp_path / "e1", max_epochs=1, value=0.2, seed=0)),
        load_run(fake_run(tmp_path / "e2", max_epochs=2, value=0.3, seed=1)),
    ]
    rows = method_table(runs, "val")
    assert [(r["n"], r["settings"]) for r in rows] == [(1, "max_epochs=1"), (1, "max_epochs=2")]
    assert [r["mAP"] for r in rows] == pytest.approx([0.2, 0.3])
    md = to_markdown(rows)
    assert md.splitlines()[0].startswith("| method | aggregator | settings | All |")
    assert "| bce | nonlinear | max_epochs=1 | 0.200 |" in md
    [warning] = table_warnings(runs)
    assert "differ in more than the seed (max_epochs)" in warning
    proc = run_cli(["vltr-report", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "## Not averaged" in proc.stdout and "max_epochs=2" in proc.stdout
    assert proc.stderr.startswith("vltr-report: warning: bce / nonlinear")


def test_overrides_are_compared_by_value_in_the_composed_config(tmp_path: Path) -> None:
    composed = "seed: {s}\ntrainer:\n  max_epochs: 20\nschedule:\n  optimizer:\n    lr: {lr}\n"
    runs = [
        # an explicit default equals the default; 1e-3 equals 0.001
        load_run(
            fake_run(
                tmp_path / "a",
                seed=0,
                overrides=("trainer.max_epochs=20", "schedule.optimizer.lr=1e-3"),
                composed=composed.format(s=0, lr=0.001),
            )
        ),
        load_run(fake_run(tmp_path / "b", seed=1, composed=composed.format(s=1, lr=0.001))),
        load_run(
            fake_run(
                tmp_path / "c",
                seed=2,
                overrides=("schedule.optimizer.lr=0.01", "dataset.num_workers=8"),
                composed=composed.format(s=2, lr=0.01),
            )
        ),
    ]
    rows = method_table(runs, "val")
    assert [(r["n"], r["settings"]) for r in rows] == [
        (2, "schedule.optimizer.lr=0.001"),
        (1, "schedule.optimizer.lr=0.01"),
    ]
    # loader workers and the seed are not settings; a repeated seed is said
    assert load_run(
        fake_run(
            tmp_path / "d",
            seed=2,
            overrides=("dataset.num_workers=2",),
            composed=composed.format(s=2, lr=0.01),
        )
    ).overrides
    warnings = table_warnings(load_runs([tmp_path]))
    assert any("repeat seed 2" in w for w in warnings)


def test_weighted_ap_equals_the_ap_of_the_resampled_split() -> None:
    from vltr.analysis.bootstrap import WeightedAP
    from vltr.evaluation.metrics import average_precision

    rng = np.random.default_rng(0)
    for _ in range(20):
        n, c = int(rng.integers(5, 60)), int(rng.integers(1, 6))
        scores = rng.integers(0, 5, (n, c)).astype(np.float32)  # many tied scores
        targets = rng.random((n, c)) < 0.3
        draws = np.bincount(rng.integers(0, n, n), minlength=n)
        ap, present = WeightedAP(scores, targets).ap(draws)
        rows = np.repeat(np.arange(n), draws)
        np.testing.assert_allclose(ap, average_precision(scores[rows], targets[rows]))
        assert np.array_equal(present, targets[rows].any(axis=0))
        np.testing.assert_allclose(
            WeightedAP(scores, targets).ap()[0], average_precision(scores, targets)
        )


@pytest.mark.e2e
def test_compare_two_runs_of_the_sweep(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vltr.analysis.bootstrap import paired_bootstrap
    from vltr.cli.report import main
    from vltr.evaluation.predictions import load_predictions

    runs = {(r.strategy, r.imbalance_ratio): r for r in load_runs([tiny_sweep]) if not r.failed}
    a, b = runs[("bce", 0.2)], runs[("focal", 0.2)]
    out = tmp_path / "cmp"
    assert main(["compare", str(a.path), str(b.path), "--resamples", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "bootstrap: 100% (200/200 resamples)" in printed.err  # progress lines
    rows = {r["metric"]: r for r in csv.DictReader(open(out / "compare.csv"))}
    for metric in ("mAP", "mAP_tail"):
        row = {k: float(v) for k, v in rows[metric].items() if k != "metric"}
        # point estimates: the runs' own test metrics (every class has a test positive)
        assert row["a"] == pytest.approx(a.test[metric], abs=2e-3)
        assert row["b"] == pytest.approx(b.test[metric], abs=2e-3)
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    assert "| mAP |" in printed.out and "95% interval" in printed.out
    # a run against itself: no difference on any resample
    same = paired_bootstrap(
        load_predictions(a.path / "predictions_test.npz"),
        load_predictions(a.path / "predictions_test.npz"),
        resamples=20,
    )
    assert all(d.diff == 0 and d.ci_low == 0 == d.ci_high for d in same.differences)
    # threads do not change the draws
    pa, pb = (load_predictions(r.path / "predictions_test.npz") for r in (a, b))
    one, two = (paired_bootstrap(pa, pb, resamples=30, threads=t) for t in (1, 2))
    assert one.differences == two.differences
    # a side whose runs differ in more than the seed is refused in one line
    with pytest.raises(SystemExit) as code:
        main(["compare", "--a", str(a.path), str(runs[("bce", 1.0)].path), "--b", str(b.path)])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differ in more than the seed" in err


def test_dashboard_workspace_is_built_offline(capsys: pytest.CaptureFixture[str]) -> None:
    from vltr.analysis.dashboard import build_workspace
    from vltr.cli.report import main

    ws = build_workspace("team", "vltr", group="ir_grid", tags=["ir:0.01"])
    panels = {s.name: s.panels for s in ws.sections}
    curves = panels["val mAP by method"]
    assert [p.y for p in curves] == [
        ["val/mAP"],
        ["val/mAP_head"],
        ["val/mAP_medium"],
        ["val/mAP_tail"],
    ]
    assert all(
        p.x == "epoch" and p.groupby.name == "run.label" and p.groupby_aggfunc == "mean"
        for p in curves
    )
    scatter = [p for p in panels["across imbalance ratios"] if type(p).__name__ == "ScatterPlot"]
    assert {(p.x.name, p.y.name, p.log_x) for p in scatter} == {
        ("run.imbalance_ratio", "test/mAP", True),
        ("run.imbalance_ratio", "test/mAP_tail", True),
    }
    chart = panels["per class"][0]
    assert chart.chart_name == "wandb/scatter/v0"
    assert chart.chart_fields == {"x": "log10_train_count", "y": "test_ap"}
    assert chart.query == {"summaryTable": {"tableKey": "class_report/per_class_ap"}}
    assert "ir_grid" in ws.runset_settings.filters and "ir:0.01" in ws.runset_settings.filters
    view = ws._to_model()  # the object W&B's API would receive: serialises without network
    assert view.project == "vltr" and view.entity == "team"
    assert main(["dashboard", "--entity", "team", "--group", "ir_grid"]) == 0
    text = capsys.readouterr().out
    assert "LinePlot: val/mAP_tail over epoch, grouped by run.label" in text
    assert "not saved" in text
