"""End to end: vltr-train in a subprocess on tiny data, vltr-eval on its checkpoint, W&B offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from vltr.data.store import FeatureStore
from vltr.data.synthetic import SyntheticSpec
from vltr.training.loggers import read_wandb_offline_run

from conftest import TINY_OVERRIDES, TINY_SYNTH, run_cli

pytestmark = pytest.mark.e2e
GROUP_KEYS = {"mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5"}


def run_dir(root: Path, task: str = "train") -> Path:
    runs = sorted((root / "logs" / task / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def chance_map(store: FeatureStore, split: str) -> float:
    # AP of a random ranking is the positive rate of the class
    idx = store.split(split)
    return float((store.class_counts(split) / len(idx)).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("train")
    proc = run_cli(["vltr-train", f"paths.root_dir={root}", *TINY_OVERRIDES], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(root)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "| test" in proc.stdout and "Head" in proc.stdout
    return root, out, metrics


def test_train_writes_metrics_that_beat_chance(trained: tuple[Path, Path, dict]) -> None:
    root, out, metrics = trained
    assert set(metrics["val"]) >= GROUP_KEYS and set(metrics["test"]) >= GROUP_KEYS
    store = FeatureStore(next((root / "data").glob("synthetic-*.h5")))
    assert store.num_classes == TINY_SYNTH["num_classes"]
    for split in ("val", "test"):
        chance = chance_map(store, split)
        assert metrics[split]["mAP"] > 2 * chance, (split, metrics[split], chance)
        assert metrics[split]["acc1"] > 2 / store.num_classes
    assert metrics["selected_on"] == "val/mAP"
    assert sum(metrics["groups"].values()) == store.num_classes


def test_run_directory_contents(trained: tuple[Path, Path, dict]) -> None:
    root, out, metrics = trained
    assert (out / ".hydra" / "config.yaml").exists()
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert Path(metrics["best_ckpt"]).parent == out / "checkpoints"
    rows = (out / "per_class_ap_test.csv").read_text().strip().splitlines()
    assert rows[0] == "class_index,class_name,train_count,group,ap"
    assert len(rows) == 1 + TINY_SYNTH["num_classes"]
    ap = np.array([float(r.split(",")[-1]) for r in rows[1:]])
    assert ap.mean() == pytest.approx(metrics["test"]["mAP"], abs=1e-5)
    assert (out / "csv" / "metrics.csv").exists()
    assert not list(root.glob("*.ckpt")) and not (root / "outputs").exists()


def test_log_without_a_terminal_has_one_line_per_epoch(trained: tuple[Path, Path, dict]) -> None:
    # the run's output is not a terminal (a subprocess with pipes): no bar, one log line per
    # epoch with the validation mAP, in the run's train.log as on the console
    _, out, _ = trained
    lines = [
        ln for ln in (out / "train.log").read_text().splitlines() if "vltr.training.progress" in ln
    ]
    epochs = [re.search(r"epoch (\d+)/(\d+) \| ", ln) for ln in lines]
    assert [(int(m.group(1)), int(m.group(2))) for m in epochs if m] == [
        (k, 12) for k in range(1, 13)
    ]
    for line in lines:
        assert re.search(r"val/mAP \d\.\d{4} \| val/mAP_tail \d\.\d{4} \|", line), line
        assert "videos/s" in line and "ETA" in line


def test_load_model_round_trips_the_test_predictions(trained: tuple[Path, Path, dict]) -> None:
    import vltr
    from vltr.evaluation.predictions import load_predictions

    _, out, metrics = trained
    model = vltr.load_model(metrics["best_ckpt"])
    assert not model.module.training and model.config.dataset.name == "synthetic"
    predicted = model.predict("test")
    saved = load_predictions(out / "predictions_test.npz")  # written when the run tested
    assert np.array_equal(predicted.index, saved.index)
    assert np.array_equal(predicted.video_ids, saved.video_ids)
    assert np.array_equal(predicted.targets, saved.targets)
    np.testing.assert_allclose(
        predicted.scores, saved.scores.astype(np.float32), rtol=2e-3, atol=2e-3
    )  # float16 in the file
    for key in GROUP_KEYS:
        assert predicted.metrics()[key] == pytest.approx(metrics["test"][key], abs=1e-6), key
        assert saved.metrics()[key] == pytest.approx(metrics["test"][key], abs=2e-3), key


def test_load_model_is_weights_only(trained: tuple[Path, Path, dict], tmp_path: Path) -> None:
    import torch

    import vltr
    from vltr.utils.errors import StoreError

    _, _, metrics = trained
    ckpt = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)
    ckpt["extra"] = Path("an object a weights-only load refuses")
    torch.save(ckpt, tmp_path / "pickled.ckpt")
    with pytest.raises(StoreError, match="not a readable checkpoint"):
        vltr.load_model(tmp_path / "pickled.ckpt")


def test_eval_reproduces_test_metrics(trained: tuple[Path, Path, dict]) -> None:
    root, out, metrics = trained
    proc = run_cli(
        [
            "vltr-eval",
            f"paths.root_dir={root}",
            f"ckpt_path={metrics['best_ckpt']}",
            "trainer.enable_progress_bar=false",
        ],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((run_dir(root, "eval") / "metrics.json").read_text())
    for split in ("val", "test"):
        for key in GROUP_KEYS:
            assert evaluated[split][key] == pytest.approx(metrics[split][key], abs=1e-6), key


def test_eval_missing_checkpoint_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        ["vltr-eval", f"paths.root_dir={tmp_path}", f"ckpt_path={tmp_path}/nope.ckpt"], cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"vltr-eval: error: {tmp_path}/nope.ckpt: no such checkpoint (ckpt_path)"
    )


def test_wandb_offline_run_files_hold_group_metrics(tmp_path: Path) -> None:
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    proc = run_cli(
        [
            "vltr-train",
            f"paths.root_dir={tmp_path}",
            *overrides,
            "trainer.max_epochs=2",
            "logger=wandb",
            "tags=[e2e]",
        ],
        cwd=tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_API_KEY": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(tmp_path)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    run = read_wandb_offline_run(runs[0])
    summary = run["summary"]
    for split in ("val", "test"):
        for key in ("mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5"):
            assert f"{split}/{key}" in summary, (split, key, sorted(summary))
    metrics = json.loads((out / "metrics.json").read_text())
    assert summary["test/mAP"] == pytest.approx(metrics["test"]["mAP"])
    assert (out / "csv" / "metrics.csv").exists()  # the CSV copy stays on beside W&B
    # per-epoch history holds the group metrics, and the composed config was logged
    epochs_with_val = [h for h in run["history"] if "val/mAP_tail" in h]
    assert len(epochs_with_val) >= 2
    assert run["config"]["dataset"]["name"] == "synthetic"


def test_tiny_spec_matches_overrides() -> None:
    # the fixture spec and the CLI overrides describe the same dataset
    spec = SyntheticSpec(**TINY_SYNTH)
    assert f"features.dim={spec.dim}" in TINY_OVERRIDES
    assert f"dataset.synthetic.num_classes={spec.num_classes}" in TINY_OVERRIDES


@pytest.mark.ddp
def test_two_process_ddp_eval_equals_single_process(trained: tuple[Path, Path, dict]) -> None:
    # gloo, 2 CPU processes: the DistributedSampler pads the shards; the metric gathers every
    # rank's predictions and drops the padding, so the numbers equal one process exactly
    root, out, metrics = trained
    proc = run_cli(
        [
            "vltr-eval",
            f"paths.root_dir={root}",
            f"ckpt_path={metrics['best_ckpt']}",
            "trainer=ddp_spawn",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.enable_progress_bar=false",
            "hydra.run.dir=" + str(root / "ddp"),
        ],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((root / "ddp" / "metrics.json").read_text())
    for split in ("val", "test"):
        for key in GROUP_KEYS:
            assert evaluated[split][key] == pytest.approx(metrics[split][key], abs=1e-6), key


def test_multirun_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    overrides = [
        o for o in TINY_OVERRIDES if not o.startswith(("trainer.max_epochs", "dataset.batch_size"))
    ]
    proc = run_cli(
        [
            "vltr-train",
            "-m",
            f"paths.root_dir={tmp_path}",
            *overrides,
            "trainer.max_epochs=1",
            "logger=none",
            "dataset.batch_size=abc,16",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
    )
    # every job ran; one failed, so the sweep exits 1 naming its failed.json
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"1 of 2 jobs failed: {tmp_path / 'sweep' / '0' / 'failed.json'}"
    )
    failed = json.loads((tmp_path / "sweep" / "0" / "failed.json").read_text())
    assert failed["error"] == "ConfigError: dataset.batch_size: expected int, got 'abc'"
    assert "dataset.batch_size=abc" in failed["overrides"]
    done = json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())
    assert set(done["test"]) >= GROUP_KEYS
    assert (tmp_path / "sweep" / "1" / ".hydra" / "config.yaml").exists()
    assert (tmp_path / "sweep" / "1" / "per_class_ap_test.csv").exists()
