"""W&B dashboards: group and tags per run and per sweep, per-epoch H/M/T curves, and the
per-class report (table, AP-vs-count scatter, count charts), read back from offline runs."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vltr.conf import imbalance_ratio, run_group, run_tags
from vltr.training.loggers import read_wandb_offline_run

from conftest import TINY_OVERRIDES, TINY_SYNTH, run_cli

pytestmark = pytest.mark.e2e
OFFLINE = {"WANDB_MODE": "offline", "WANDB_API_KEY": ""}
BASE = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]


def offline_run(job_dir: Path) -> dict:
    runs = list((job_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return read_wandb_offline_run(runs[0])


def per_class_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_group_and_tag_resolvers() -> None:
    assert run_group(None, "/x/multiruns/2024-01-01_00-00-00", "train-videolt") == "train-videolt"
    assert run_group("RunMode.RUN", "/x/multiruns/s1", "train-videolt") == "train-videolt"
    assert run_group("RunMode.MULTIRUN", "/x/multiruns/s1", "train-videolt") == "s1"
    tags = run_tags(["mine", "dataset:videolt"], "videolt", "cbs", "netvlad", "base", "natural")
    assert tags == [
        "dataset:videolt",
        "strategy:cbs",
        "aggregator:netvlad",
        "method:base",
        "ir:natural",
        "mine",
    ]
    assert "ir:0.05" in run_tags([], "minikinetics200", "bce", "nonlinear", "base", 0.05)
    # dataset.imbalance_ratio first, else the synthetic dataset's generated ratio
    assert imbalance_ratio(0.05, 0.01) == 0.05
    assert imbalance_ratio(None, 0.01) == 0.01
    assert imbalance_ratio(None, None) == "natural"


def test_single_run_dashboard_data(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "vltr-train",
            f"paths.root_dir={tmp_path}",
            *BASE,
            "trainer.max_epochs=3",
            "logger=wandb",
            "tags=[dash]",
            "dataset.imbalance_ratio=0.5",
        ],
        cwd=tmp_path,
        env=OFFLINE,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    run = offline_run(out)

    assert run["run"]["group"] == "train-synthetic"
    assert run["run"]["name"] == "base-bce-nonlinear-linear-synthetic-synthetic"
    assert run["run"]["tags"] == [
        "dataset:synthetic",
        "strategy:bce",
        "aggregator:nonlinear",
        "method:base",
        "ir:0.5",
        "dash",
    ]
    # the same choices as config keys, which W&B can group by
    assert run["config"]["run"] == {
        "dataset": "synthetic",
        "features": "synthetic",
        "aggregator": "nonlinear",
        "strategy": "bce",
        "method": "base",
        "experiment": None,
        "label": "bce",
        "imbalance_ratio": 0.5,
    }

    # per-epoch head/medium/tail curves (one row per fit epoch, plus the explicit validate)
    for key in ("val/mAP", "val/mAP_head", "val/mAP_medium", "val/mAP_tail"):
        assert len([h for h in run["history"] if key in h]) >= 3, key

    # the per-class table equals the CSV files the run wrote for the same checkpoint
    table = run["tables"]["class_report/per_class_ap"]
    cols = table["columns"]
    assert cols == [
        "class_index",
        "class_name",
        "train_count",
        "log10_train_count",
        "group",
        "val_ap",
        "test_ap",
    ]
    rows = [dict(zip(cols, r, strict=True)) for r in table["data"]]
    assert len(rows) == TINY_SYNTH["num_classes"]
    for split in ("test", "val"):
        written = per_class_csv(out / f"per_class_ap_{split}.csv")
        assert len(written) == len(rows)
        for row, ref in zip(rows, written, strict=True):
            assert row["class_index"] == int(ref["class_index"])
            assert row["class_name"] == ref["class_name"]
            assert row["train_count"] == int(ref["train_count"])
            assert row["group"] == ref["group"]
            assert row[f"{split}_ap"] == pytest.approx(float(ref["ap"]), abs=1e-6)
            assert row["log10_train_count"] == pytest.approx(math.log10(row["train_count"]))
    metrics = json.loads((out / "metrics.json").read_text())
    mean_test_ap = sum(r["test_ap"] for r in rows) / len(rows)
    assert mean_test_ap == pytest.approx(metrics["test"]["mAP"], abs=1e-6)

    # the charts, and the tables behind them
    charts = run["charts"]
    scatter = charts["class_report/ap_vs_train_count"]["panel_config"]
    assert scatter["panelDefId"] == "wandb/scatter/v0"
    assert scatter["fieldSettings"] == {"x": "log10_train_count", "y": "test_ap"}
    hist = charts["class_report/train_count_histogram"]["panel_config"]
    assert hist["panelDefId"] == "wandb/histogram/v0"
    bar = charts["class_report/train_counts_ranked"]["panel_config"]
    assert bar["panelDefId"] == "wandb/bar/v0"
    ranked = run["tables"]["class_report/train_counts_ranked_table"]["data"]
    counts = [n for _, n in ranked]
    assert counts == sorted(counts, reverse=True) and len(counts) == TINY_SYNTH["num_classes"]
    assert [label for label, _ in ranked] == sorted(label for label, _ in ranked)
    for key in ("ap_vs_train_count", "train_count_histogram"):
        assert len(run["tables"][f"class_report/{key}_table"]["data"]) == len(rows)


def test_multirun_jobs_share_the_sweep_group_as_separate_runs(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "vltr-train",
            "-m",
            f"paths.root_dir={tmp_path}",
            *BASE,
            "trainer.max_epochs=1",
            "logger=wandb",
            "seed=0,1",
        ],
        cwd=tmp_path,
        env=OFFLINE,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    runs = [offline_run(sweep / str(job)) for job in (0, 1)]
    assert [r["run"]["group"] for r in runs] == [sweep.name, sweep.name]
    assert runs[0]["run"]["id"] != runs[1]["run"]["id"]
    for job, r in enumerate(runs):
        assert r["config"]["seed"] == job  # each run holds its own job's config and metrics
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert r["summary"]["test/mAP"] == pytest.approx(metrics["test"]["mAP"])
        assert "class_report/per_class_ap" in r["tables"]


def test_auto_mode_without_a_key_runs_offline(tmp_path: Path) -> None:
    # logger.wandb.mode=auto with no key must write an offline run, not ask for a login
    # (W&B ignores WANDB_MODE set after its settings were loaded by the credentials check)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_SILENT="true", OMP_NUM_THREADS="1")
    code = (
        "from vltr.training.loggers import wandb_logger, finish_wandb\n"
        f"lg = wandb_logger(project='t', save_dir={str(tmp_path)!r}, mode='auto')\n"
        "print(lg.experiment.settings.mode)\n"
        "finish_wandb()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "offline"
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
