"""Callbacks: those vltr adds to every run (the run depends on them), those ``vltr-eval`` adds
on request (resampled test distributions), the per-video predictions file
(``callbacks.test_predictions``) and the optional W&B class report
(``callbacks.wandb_class_report``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from vltr.data.datamodule import DatasetInfo
from vltr.data.longtail import group_of_classes
from vltr.evaluation.predictions import Predictions, save_predictions
from vltr.evaluation.resample import resampled_metrics
from vltr.utils.io import atomic_path


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
            writer.writerow(
                [
                    c,
                    info.class_names[c],
                    int(info.class_counts[c]),
                    groups[c],
                    f"{float(value):.6f}",
                ]
            )


class PredictionsWriter(L.Callback):
    """Save the evaluated split's per-video predictions as ``predictions_<split>.npz``
    (:mod:`vltr.evaluation.predictions`): what paired comparisons of two runs on the same test
    videos need (``vltr-report compare``, the notebooks).

    Written for explicit ``validate``/``test`` runs only (the best checkpoint after fitting),
    for the ``splits`` asked (default: test); the predictions are the ones the split's metric
    gathered (every rank's, padding dropped); rank 0 writes, atomically.
    """

    def __init__(self, output_dir: str, splits: Sequence[str] = ("test",)) -> None:
        self.output_dir = Path(output_dir)
        self.splits = tuple(splits)

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        metric = getattr(pl_module, f"{split}_metrics", None)
        datamodule = getattr(trainer, "datamodule", None)
        if split not in self.splits or metric is None or not hasattr(datamodule, "info"):
            return
        index, scores, targets = metric.indexed_predictions()  # every rank: it gathers
        if not trainer.is_global_zero:
            return
        info = datamodule.info()
        ids = np.asarray(datamodule.store.video_ids(), dtype=str)
        save_predictions(
            self.output_dir / f"predictions_{split}.npz",
            Predictions(
                index=index,
                video_ids=ids[index],
                scores=scores.cpu().numpy(),
                targets=targets.cpu().numpy() > 0,
                class_names=np.asarray(info.class_names),
                class_counts=info.class_counts,
                head_min=info.head_min,
                tail_max=info.tail_max,
                split=split,
            ),
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._save(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, pl_module, "test")


class ResampledTestMetrics(L.Callback):
    """Score the test predictions under other class distributions (``eval.test_distribution``).

    Runs in ``on_test_epoch_end``, before the module's hook computes and resets the split's
    metric: it takes the gathered, de-duplicated predictions from the module's
    ``test_metrics`` (computed once, by the test loop), resamples them on every rank alike
    (seeded, pure: :func:`vltr.evaluation.resample.resampled_metrics`) and logs
    ``test_distribution/<name>/<metric>`` (and ``..._std``), so the values come back from
    ``trainer.test`` like any metric, also from spawned DDP processes.
    """

    PREFIX = "test_distribution"

    def __init__(
        self,
        info: DatasetInfo,
        distributions: Sequence[str],
        repeats: int = 5,
        seed: int = 0,
        size: int | None = None,
    ) -> None:
        self.info = info
        self.distributions = list(distributions)
        self.repeats = repeats
        self.seed = seed
        self.size = size

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metric = getattr(pl_module, "test_metrics", None)
        if metric is None or not self.distributions:
            return
        scores, targets = metric.predictions()
        results = resampled_metrics(
            scores.cpu().numpy(),
            targets.cpu().numpy(),
            self.info.class_counts,
            self.info.groups,
            self.distributions,
            repeats=self.repeats,
            seed=self.seed,
            size=self.size,
        )
        pl_module.log_dict(
            {
                f"{self.PREFIX}/{name}/{key}": value
                for name, metrics in results.items()
                for key, value in metrics.items()
            },
            sync_dist=True,
        )


class WandbClassReport(L.Callback):
    """After testing, log per-class results to W&B: what the H/M/T means hide.

    A ``wandb.Table`` (class index, name, training count, log10 count, group, val AP, test AP
    of the evaluated checkpoint), "AP vs training count" (scatter of test AP over log10 count:
    W&B's scatter has no log axis), a histogram of log10 training counts and the training
    counts sorted descending (the long-tail profile; labels carry the rank so the bars keep
    that order). The APs are the module's ``per_class_ap``, the numbers
    :class:`PerClassAPWriter` writes to ``per_class_ap_{val,test}.csv``.

    A no-op unless a :class:`~lightning.pytorch.loggers.WandbLogger` is among the trainer's
    loggers; rank 0 only; nothing here needs network (offline runs store it for ``wandb sync``).
    """

    def __init__(self, prefix: str = "class_report") -> None:
        self.prefix = prefix

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        test_ap = getattr(pl_module, "per_class_ap", {}).get("test")
        datamodule = getattr(trainer, "datamodule", None)
        if (
            not loggers
            or test_ap is None
            or not trainer.is_global_zero
            or not hasattr(datamodule, "info")
        ):
            return
        info = datamodule.info()
        val_ap = pl_module.per_class_ap.get("val")
        loggers[0].experiment.log(self.payload(info, test_ap, val_ap))

    def payload(
        self, info: DatasetInfo, test_ap: np.ndarray, val_ap: np.ndarray | None
    ) -> dict[str, Any]:
        """The W&B objects to log, by key (``<prefix>/per_class_ap``, ``.../ap_vs_train_count``,
        ``.../train_count_histogram``, ``.../train_counts_ranked``)."""
        import wandb

        groups = group_of_classes(info.class_counts, info.head_min, info.tail_max)
        columns = [
            "class_index",
            "class_name",
            "train_count",
            "log10_train_count",
            "group",
            "val_ap",
            "test_ap",
        ]
        rows = []
        for c in range(info.num_classes):
            n = int(info.class_counts[c])
            rows.append(
                [
                    c,
                    info.class_names[c],
                    n,
                    math.log10(n) if n > 0 else None,
                    str(groups[c]),
                    None if val_ap is None else float(val_ap[c]),
                    float(test_ap[c]),
                ]
            )
        table = wandb.Table(columns=columns, data=rows)
        order = np.argsort(-np.asarray(info.class_counts), kind="stable")
        width = len(str(max(info.num_classes - 1, 0)))
        ranked = wandb.Table(
            columns=["rank_class", "train_count"],
            data=[
                [f"{r:0{width}d} {info.class_names[c]}", int(info.class_counts[c])]
                for r, c in enumerate(order)
            ],
        )
        p = self.prefix
        return {
            f"{p}/per_class_ap": table,
            f"{p}/ap_vs_train_count": wandb.plot.scatter(
                table, "log10_train_count", "test_ap", title="test AP vs training count (log10)"
            ),
            f"{p}/train_count_histogram": wandb.plot.histogram(
                table, "log10_train_count", title="classes by training count (log10)"
            ),
            f"{p}/train_counts_ranked": wandb.plot.bar(
                ranked, "rank_class", "train_count", title="training videos per class, sorted"
            ),
        }
