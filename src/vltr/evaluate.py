"""``vltr-eval ckpt_path=PATH``: evaluate a checkpoint written by ``vltr-train``.

The checkpoint carries its run's resolved config (model, strategy, dataset), so nothing else is
needed. ``dataset=...`` (and ``features=...``) evaluate the same model on another store with
the same classes. Writes ``metrics.json`` and ``per_class_ap_{split}.csv`` to the eval run's
output directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from vltr.builders import build_datamodule, build_module
from vltr.callbacks import PerClassAPWriter
from vltr.cli import format_table, user_errors
from vltr.config import EvalSchema, validate_config
from vltr.errors import ConfigError, StoreError
from vltr.io import write_json_atomic
from vltr.warnings_filter import quiet_known_warnings

log = logging.getLogger("vltr.evaluate")


def load_run_config(ckpt_path: str | Path) -> DictConfig:
    """The resolved training config stored in a vltr checkpoint."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise StoreError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say so in one line
        raise StoreError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from None
    if "vltr" not in ckpt or "config" not in ckpt["vltr"]:
        raise ConfigError(f"{path}: not a vltr checkpoint (no stored run config)")
    return OmegaConf.create(ckpt["vltr"]["config"])


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.splits``; return ``{split: metrics}``."""
    validate_config(cfg, EvalSchema)
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError("ckpt_path is required: vltr-eval ckpt_path=PATH/TO/checkpoint.ckpt")
    run_cfg = load_run_config(cfg.ckpt_path)
    output_dir = Path(cfg.paths.output_dir)
    with open_dict(run_cfg):
        if cfg.get("dataset") is not None:
            # resolve the new dataset node against this eval's features (or the run's)
            scope = OmegaConf.create({"paths": cfg.paths, "features": cfg.features
                                      if cfg.get("features") is not None else run_cfg.features,
                                      "dataset": cfg.dataset})
            run_cfg.dataset = OmegaConf.to_container(scope.dataset, resolve=True)
            run_cfg.features = OmegaConf.to_container(scope.features, resolve=True)
        run_cfg.trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
        run_cfg.paths.output_dir = str(output_dir)

    datamodule = build_datamodule(run_cfg)
    info = datamodule.info()
    model = build_module(run_cfg, info)
    trainer = instantiate(run_cfg.trainer, logger=False,
                          callbacks=[PerClassAPWriter(str(output_dir), info)])
    results: dict[str, Any] = {}
    for split in cfg.splits:
        if split == "val":
            out = trainer.validate(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path,
                                   verbose=False)
        elif split == "test":
            out = trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path,
                               verbose=False)
        else:
            raise ConfigError(f"splits: unknown split {split!r} (use val, test)")
        prefix = f"{split}/"
        results[split] = {k[len(prefix):]: float(v) for r in out for k, v in r.items()
                          if k.startswith(prefix)}
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json",
                          {"ckpt_path": str(cfg.ckpt_path), "dataset": info.name, **results})
        print(f"\n{info.name} ({cfg.ckpt_path})\n{format_table(results)}\n"
              f"outputs: {output_dir}", flush=True)
    return results


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    quiet_known_warnings()
    with user_errors("vltr-eval"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
