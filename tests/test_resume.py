"""Resume: a vltr-train killed with SIGKILL mid-training, resumed with ``ckpt_path=last`` in its
own directory, ends with exactly the metrics of an uninterrupted run (deterministic CPU mode,
one process, ``num_workers=0``), and continues the same W&B run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from vltr.training.loggers import RunCSVLogger

from conftest import BIN, TINY_OVERRIDES, main_exit, run_cli

pytestmark = pytest.mark.e2e

EPOCHS = 10
# mixup draws from torch's generator, the aggregator has dropout, clips draw frames from the
# dataset's generator: every random stream of training matters for the final metrics
ARGS = [
    *(
        o
        for o in TINY_OVERRIDES
        if not o.startswith(("trainer.max_epochs", "schedule.scheduler.milestones"))
    ),
    f"trainer.max_epochs={EPOCHS}",
    "schedule.scheduler.milestones=[6]",
    "seed=3",
    "trainer.deterministic=true",
    "strategy=mixup",
]
WANDB_OFFLINE = {"WANDB_MODE": "offline", "WANDB_API_KEY": "", "WANDB_SILENT": "true"}


def train_args(root: Path, run: Path, *extra: str) -> list[str]:
    return ["vltr-train", f"paths.root_dir={root}", f"hydra.run.dir={run}", *ARGS, *extra]


def popen(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a console script in the background, its output going to ``log`` (a pipe nobody
    reads while it runs could fill up and stall it)."""
    full_env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "WANDB_SILENT": "true",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=log.parent,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def start_and_kill_after_first_epoch(
    args: list[str], run: Path, log: Path, env: dict[str, str]
) -> int:
    """Start vltr-train, SIGKILL it as soon as ``last.ckpt`` exists (>= 1 epoch finished);
    return the epoch of the checkpoint that survived."""
    last = run / "checkpoints" / "last.ckpt"
    proc = popen(args, log, env)
    try:
        deadline = time.monotonic() + 120
        while not last.exists():
            assert proc.poll() is None, f"exited early: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()  # it really died mid-training
    epoch = int(torch.load(last, map_location="cpu", weights_only=False)["epoch"])
    assert epoch < EPOCHS - 1
    return epoch


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, int, str, dict]:
    """An uninterrupted run (CSV logger), and beside it (one core each) a run killed after its
    first epoch and resumed, logging to W&B offline both times."""
    root = tmp_path_factory.mktemp("resume")
    full = popen(train_args(root, root / "full"), root / "full.log")
    try:
        run = root / "killed"
        epoch = start_and_kill_after_first_epoch(
            train_args(root, run, "logger=wandb"), run, root / "killed.log", WANDB_OFFLINE
        )
        proc = run_cli(
            train_args(root, run, "logger=wandb", "ckpt_path=last"), cwd=root, env=WANDB_OFFLINE
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert full.wait(timeout=300) == 0, (root / "full.log").read_text()[-3000:]
    finally:
        full.kill()
        full.wait()
    uninterrupted = json.loads((root / "full" / "metrics.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    return uninterrupted, run, epoch, proc.stdout + proc.stderr, metrics


def test_killed_run_resumes_to_the_uninterrupted_metrics(
    runs: tuple[dict, Path, int, str, dict],
) -> None:
    uninterrupted, run, epoch, output, metrics = runs
    assert "Restoring states from the checkpoint path" in output
    # tolerance: none. Weights, optimizer, scheduler and loop state come back from last.ckpt, the
    # random generators (shuffle, dropout, mixup, clip frames) from vltr.training.resume
    assert metrics["val"] == uninterrupted["val"]
    assert metrics["test"] == uninterrupted["test"]
    assert Path(metrics["best_ckpt"]).name == Path(uninterrupted["best_ckpt"]).name
    # the CSV curves keep the killed run's epochs (appended, not replaced)
    rows = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = {
        int(r.split(",")[header.index("epoch")])
        for r in rows[1:]
        if r.split(",")[header.index("val/mAP")]
    }
    assert set(range(EPOCHS)) <= epochs, (epoch, sorted(epochs))


def test_resumed_run_continues_the_same_wandb_run(runs: tuple[dict, Path, int, str, dict]) -> None:
    run = runs[1]
    run_id = (run / "wandb_run_id").read_text().strip()
    assert len(run_id) == 8
    # one offline run directory per start, both named ...-<id>
    dirs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(dirs) == 2, dirs
    assert all(d.name.endswith(f"-{run_id}") for d in dirs), dirs


def test_resume_without_last_checkpoint_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "never-ran"
    args = train_args(tmp_path, run, "ckpt_path=last")
    assert args[0] == "vltr-train"
    code, last = main_exit(monkeypatch, capsys, *args)
    assert code == 2
    assert last == (
        f"vltr-train: error: {run}/checkpoints/last.ckpt: no such checkpoint (ckpt_path=last "
        "resumes the run in hydra.run.dir=<its output directory>)"
    )
    assert not (run / "metrics.json").exists()


def test_csv_header_rewrite_killed_midway_keeps_the_earlier_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new metric makes the CSV writer rewrite ``metrics.csv`` under a wider header; a run
    killed during that rewrite must still find its earlier rows when it resumes."""
    writer = RunCSVLogger(save_dir=str(tmp_path), name="csv", version="").experiment
    writer.log_metrics({"epoch": 0, "val/mAP": 0.5}, step=0)
    writer.save()
    before = Path(writer.metrics_file_path).read_text()

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands in for the kill arriving mid-write

    writer.log_metrics({"epoch": 0, "train/loss_epoch": 1.0}, step=1)
    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.save()
    assert Path(writer.metrics_file_path).read_text() == before
    assert [p.name for p in tmp_path.joinpath("csv").iterdir()] == ["metrics.csv"]

    monkeypatch.undo()
    # the resumed run's writer continues the file under the wider header
    resumed = RunCSVLogger(save_dir=str(tmp_path), name="csv", version="").experiment
    resumed.log_metrics({"epoch": 1, "train/loss_epoch": 1.0}, step=2)
    resumed.save()
    rows = list(csv.DictReader(Path(writer.metrics_file_path).read_text().splitlines()))
    assert [(r["epoch"], r["val/mAP"], r["train/loss_epoch"]) for r in rows] == [
        ("0", "0.5", ""),
        ("1", "", "1.0"),
    ]
