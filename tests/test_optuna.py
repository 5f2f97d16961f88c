"""An Optuna study through ``vltr-train hparams_search=synthetic_optuna``: it finishes, writes
``optimization_results.yaml``, and a trial that fails is recorded with the value 0.0 instead of
stopping the study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import TINY_OVERRIDES, run_cli

pytestmark = pytest.mark.e2e


def test_study_finishes_and_a_failing_trial_scores_zero(tmp_path: Path) -> None:
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    sweep = tmp_path / "study"
    # imbalance_ratio 2.0 is invalid (ConfigError in the trial); with the config's TPE seed the
    # three trials draw both values (checked below). direction=minimize makes the failed
    # trials' value the best one, so optimization_results.yaml shows what the study recorded
    # for them: 0.0 (vltr.training.train.FAILED_VALUE), as a completed trial.
    proc = run_cli(
        [
            "vltr-train",
            "hparams_search=synthetic_optuna",
            f"paths.root_dir={tmp_path}",
            *overrides,
            "trainer.max_epochs=2",
            "logger=none",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.direction=minimize",
            "dataset.imbalance_ratio=choice(0.5,2.0)",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    # the study finished every trial; trials failed, so vltr-train exits 1 and lists them
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert " of 3 jobs failed: " in proc.stderr.strip().splitlines()[-1]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert results["best_value"] == 0.0
    assert results["best_params"]["dataset.imbalance_ratio"] == 2.0
    # the sampled space: the config's, plus the command line's choice(); a plain value on the
    # command line fixes its parameter (TINY_OVERRIDES sets the lr and aggregator.hidden_dim)
    assert set(results["best_params"]) == {
        "schedule.optimizer.weight_decay",
        "aggregator.dropout",
        "dataset.imbalance_ratio",
    }
    jobs = sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit())
    assert jobs == [0, 1, 2]  # the study went on after the failure
    failed = [j for j in jobs if (sweep / str(j) / "failed.json").exists()]
    done = [j for j in jobs if (sweep / str(j) / "metrics.json").exists()]
    assert failed and done and sorted(failed + done) == jobs
    for j in failed:
        error = json.loads((sweep / str(j) / "failed.json").read_text())["error"]
        assert "dataset.imbalance_ratio must be in (0, 1] or null, got 2.0" in error, error
    for j in done:
        metrics = json.loads((sweep / str(j) / "metrics.json").read_text())
        assert metrics["val"]["mAP"] > 0.0
        assert "dataset.imbalance_ratio=0.5" in metrics["run"]["overrides"]
