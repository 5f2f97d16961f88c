"""``vltr-train``: fit, select the best checkpoint on val, test it, print the H/M/T table.

A thin ``@hydra.main`` over :func:`train`, which tests and other tools call with a composed
config. Everything the run writes goes to ``paths.output_dir`` (Hydra's run directory):
``metrics.json`` (best-on-val checkpoint's val and test metrics), ``per_class_ap_{val,test}.csv``,
``checkpoints/``, the CSV/W&B logs and Hydra's ``.hydra/config.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from vltr.builders import build_callbacks, build_datamodule, build_loggers, build_module
from vltr.callbacks import PerClassAPWriter, RunConfigInCheckpoint
from vltr.cli import format_table, user_errors
from vltr.config import validate_config
from vltr.io import write_json_atomic
from vltr.loggers import finish_wandb
from vltr.warnings_filter import quiet_known_warnings

log = logging.getLogger("vltr.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; return ``{"val": {...}, "test": {...}, "best_ckpt": path}``."""
    validate_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule(cfg)
    info = datamodule.info()
    model = build_module(cfg, info)

    loggers = build_loggers(cfg.get("logger"))
    callbacks = build_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    callbacks += [RunConfigInCheckpoint(resolved), PerClassAPWriter(str(output_dir), info)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(_flat_hparams(resolved))

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        result: dict[str, Any] = {"best_ckpt": None, "val": {}, "test": {}}
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        if best is None:
            log.warning("no best checkpoint (no checkpoint callback?): evaluating last weights")
        result["best_ckpt"] = best
        if cfg.get("test", True):
            result["val"] = _only(trainer.validate(model, datamodule=datamodule, ckpt_path=best,
                                                   verbose=False), "val/")
            result["test"] = _only(trainer.test(model, datamodule=datamodule, ckpt_path=best,
                                                verbose=False), "test/")
        _report(output_dir, cfg, info, result)
        return result
    finally:
        finish_wandb()


def _only(results: list[dict[str, float]], prefix: str) -> dict[str, float]:
    merged: dict[str, float] = {}
    for r in results:
        merged.update({k[len(prefix):]: float(v) for k, v in r.items() if k.startswith(prefix)})
    return merged


def _flat_hparams(resolved: dict[str, Any]) -> dict[str, Any]:
    keep = ("dataset", "features", "aggregator", "strategy", "method", "seed", "run_name",
            "tags", "trainer")
    return {k: resolved[k] for k in keep if k in resolved}


@rank_zero_only
def _report(output_dir: Path, cfg: DictConfig, info: Any, result: dict[str, Any]) -> None:
    counts = info.class_counts
    groups = {name: int(mask.sum()) for name, mask in info.groups.items()}
    payload = {
        "run_name": cfg.get("run_name"),
        "dataset": info.name,
        "num_classes": info.num_classes,
        "train_videos_per_class": {"min": int(counts.min()), "max": int(counts.max())},
        "groups": groups,
        "group_thresholds": {"head_min": info.head_min, "tail_max": info.tail_max},
        "best_ckpt": result["best_ckpt"],
        "selected_on": cfg.get("monitor", "val/mAP"),
        "val": result["val"],
        "test": result["test"],
    }
    write_json_atomic(output_dir / "metrics.json", payload)
    if result["val"] or result["test"]:
        table = format_table({k: result[k] for k in ("val", "test") if result[k]})
        print(f"\n{info.name}: {info.num_classes} classes, groups head/medium/tail = "
              f"{groups['head']}/{groups['medium']}/{groups['tail']} "
              f"(best checkpoint on {payload['selected_on']})\n{table}\n"
              f"outputs: {output_dir}", flush=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_known_warnings()
    with user_errors("vltr-train"):
        result = train(cfg)
    # the value Hydra sweepers (optuna) optimise: the monitored val metric of the best checkpoint
    monitor = str(cfg.get("monitor", "val/mAP"))
    return result["val"].get(monitor.split("/", 1)[-1])


if __name__ == "__main__":
    main()
