"""Callbacks vltr adds to every run (not configurable: the run depends on them)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from vltr.data.datamodule import DatasetInfo
from vltr.data.longtail import group_of_classes
from vltr.io import atomic_path


class RunConfigInCheckpoint(L.Callback):
    """Store the resolved run config in every checkpoint, so ``vltr-eval`` needs nothing else."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["vltr"] = {"config": self.config}


class PerClassAPWriter(L.Callback):
    """Write ``per_class_ap_{val,test}.csv`` (class, train count, group, AP) after evaluation.

    Only for explicit ``validate``/``test`` runs (the best checkpoint), not every fit epoch;
    on rank 0 only; atomically.
    """

    def __init__(self, output_dir: str, info: DatasetInfo) -> None:
        self.output_dir = Path(output_dir)
        self.info = info

    @rank_zero_only
    def _write(self, pl_module: L.LightningModule, stage: str) -> None:
        ap = getattr(pl_module, "per_class_ap", {}).get(stage)
        if ap is None:
            return
        write_per_class_ap(self.output_dir / f"per_class_ap_{stage}.csv", ap, self.info)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(pl_module, "test")


def write_per_class_ap(path: Path, ap: np.ndarray, info: DatasetInfo) -> None:
    groups = group_of_classes(info.class_counts, info.head_min, info.tail_max)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_index", "class_name", "train_count", "group", "ap"])
        for c, value in enumerate(ap):
            writer.writerow([c, info.class_names[c], int(info.class_counts[c]), groups[c],
                             f"{float(value):.6f}"])
