"""Multi-stage training: a method's ``stages`` run in order, each from the last one's weights.

A method declares its stages in its config (``method.stages``, a list of config overrides, e.g.
MEID's two stages: the stage number its module is built for, stage 2's learning rate and
sampler). :func:`run_stages` runs stage ``k`` in ``<output>/stage<k>/`` with the run's config
merged with the stage's overrides, starting from stage ``k - 1``'s best-on-val checkpoint, and
returns the last stage's result with every stage's metrics. ``start_stage`` skips earlier
stages, starting from the weights in ``init_ckpt``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vltr.utils.errors import ConfigError

log = logging.getLogger("vltr.training.stages")

# (stage config, stage output dir, initial weights or None) -> {"val", "test", "best_ckpt", ...}
StageRunner = Callable[[DictConfig, Path, "str | None"], dict[str, Any]]


def method_stages(cfg: DictConfig) -> list[Any]:
    """The method's stage overrides (empty for single-stage methods)."""
    stages = OmegaConf.select(cfg, "method.stages")
    return list(stages) if stages else []


def stage_config(cfg: DictConfig, overrides: Any, output_dir: Path) -> DictConfig:
    """``cfg`` merged with one stage's ``overrides``, writing to ``output_dir``, single-stage."""
    # a stage may add keys the composed config lacks (e.g. a sampler): merge unlocked
    base = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    merged = OmegaConf.merge(base, overrides)
    OmegaConf.set_struct(merged, True)
    with open_dict(merged):
        merged.method.stages = None
        merged.paths.output_dir = str(output_dir)
    return merged


def run_stages(cfg: DictConfig, run: StageRunner) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the method's stages with ``run``; return the last stage's result and
    ``{"stage<k>": {"val", "test", "best_ckpt"}}`` for every stage that ran."""
    stages = method_stages(cfg)
    start = int(cfg.get("start_stage", 1))
    if not 1 <= start <= len(stages):
        raise ConfigError(f"start_stage={start}: the method has stages 1..{len(stages)}")
    if start > 1 and not cfg.get("init_ckpt"):
        raise ConfigError(f"start_stage={start} needs init_ckpt=<checkpoint of stage {start - 1}>")
    output_dir = Path(cfg.paths.output_dir)
    init, result, per_stage = cfg.get("init_ckpt"), {}, {}
    for k, overrides in enumerate(stages, start=1):
        if k < start:
            continue
        stage_dir = output_dir / f"stage{k}"
        log.info("stage %d of %d (from %s) -> %s", k, len(stages), init or "scratch", stage_dir)
        result = run(stage_config(cfg, overrides, stage_dir), stage_dir, init)
        per_stage[f"stage{k}"] = {
            "val": result["val"],
            "test": result["test"],
            "best_ckpt": result["best_ckpt"],
        }
        init = result["best_ckpt"]
    return result, per_stage
