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

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from vltr.conf import imbalance_ratio
from vltr.evaluation.tables import format_table
from vltr.training.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    compile_model,
)
from vltr.training.callbacks import PerClassAPWriter, RunConfigInCheckpoint
from vltr.training.checkpoints import check_weights_fit, load_checkpoint
from vltr.training.config import require_values, validate_config
from vltr.training.loggers import finish_wandb
from vltr.training.progress import configure_progress
from vltr.training.resume import RandomStateInCheckpoint, resolve_ckpt_path
from vltr.training.stages import method_stages, run_stages
from vltr.utils.errors import ConfigError
from vltr.utils.io import write_json_atomic

log = logging.getLogger("vltr.training.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; return ``{"val": {...}, "test": {...}, "best_ckpt": path}``.

    A multi-stage method (``method.stages``, e.g. MEID) runs its stages in order
    (:mod:`vltr.training.stages`) in ``<output>/stage<k>/``; the last stage's result is the run's.
    """
    validate_config(cfg)
    require_values(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if not method_stages(cfg):
        return _train_stage(cfg, output_dir, cfg.get("init_ckpt"))
    result, per_stage = run_stages(cfg, _train_stage)
    if rank_zero_only.rank == 0:
        write_json_atomic(
            output_dir / "metrics.json", {**_summary(cfg, result), "stages": per_stage}
        )
    return result


def _train_stage(cfg: DictConfig, output_dir: Path, init_ckpt: str | None) -> dict[str, Any]:
    # "last": this run directory's last.ckpt; a missing one fails here, in one line
    resume_from = resolve_ckpt_path(cfg.get("ckpt_path"), _checkpoint_dir(cfg, output_dir))
    # checkpoints are read weights-only (no code from the file) before anything is built, so a
    # crafted, truncated or empty one is one line at start; Lightning reads them weights-only too
    resume_state = load_checkpoint(resume_from, "ckpt_path")["state_dict"] if resume_from else None
    init_state = load_checkpoint(init_ckpt, "init_ckpt")["state_dict"] if init_ckpt else None
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    info = datamodule.info()
    _warn_classes_without_training_videos(info)
    model = build_module(cfg, info)
    if init_state is not None:
        _load_weights(model, init_state, str(init_ckpt), info)
    if resume_state is not None:
        # another class count or feature dim: one line here, not a traceback inside Lightning
        check_weights_fit(
            resume_state, model, str(resume_from), "ckpt_path", strict=True, data=_describe(info)
        )
    del resume_state, init_state
    if cfg.get("compile"):
        log.info("torch.compile: %s", ", ".join(compile_model(model)))

    loggers = build_loggers(cfg.get("logger"))
    callbacks = build_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    callbacks += [
        RunConfigInCheckpoint(resolved),
        PerClassAPWriter(str(output_dir), info),
        RandomStateInCheckpoint(),
    ]
    # a bar only on a terminal; otherwise log lines (and no bar callback to conflict with
    # trainer.enable_progress_bar=false)
    callbacks, show_bar = configure_progress(
        callbacks, cfg.trainer.get("enable_progress_bar", True)
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_progress_bar=show_bar
    )
    for lg in loggers:
        lg.log_hyperparams(_flat_hparams(resolved))

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        result: dict[str, Any] = {"best_ckpt": None, "val": {}, "test": {}, "info": info}
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        if best is None:
            log.warning("no best checkpoint (no checkpoint callback?): evaluating last weights")
        result["best_ckpt"] = best
        if cfg.get("test", True):
            result["val"] = _only(
                trainer.validate(
                    model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True
                ),
                "val/",
            )
            result["test"] = _only(
                trainer.test(
                    model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True
                ),
                "test/",
            )
        _report(output_dir, cfg, info, result)
        return result
    finally:
        finish_wandb()


def _checkpoint_dir(cfg: DictConfig, output_dir: Path) -> Path:
    """Where the checkpoint callback writes (``last.ckpt`` included)."""
    node = (cfg.get("callbacks") or {}).get("model_checkpoint")
    dirpath = node.get("dirpath") if node is not None else None
    return Path(dirpath) if dirpath else output_dir / "checkpoints"


def _load_weights(model: L.LightningModule, state: dict[str, Any], path: str, info: Any) -> None:
    """Initialise ``model`` from a checkpoint's weights (non-strict: a later stage may add
    modules); the keys that matched are logged, a checkpoint that matches nothing or whose
    weights have other shapes is an error."""
    loaded = check_weights_fit(state, model, path, "init_ckpt", strict=False, data=_describe(info))
    if loaded == 0:
        raise ConfigError(f"{path}: no weight of this checkpoint fits the model (init_ckpt)")
    result = model.load_state_dict(state, strict=False)
    log.info(
        "initialised %d tensors from %s (%d new in this model)",
        loaded,
        path,
        len(result.missing_keys),
    )


def _describe(info: Any) -> str:
    return f"{info.num_classes} classes, {info.dim}-dim features"


@rank_zero_only
def _warn_classes_without_training_videos(info: Any) -> None:
    """Once per run: classes that no training video carries are still scored (their AP counts
    in the tail group), but nothing was learned for them."""
    missing = [name for name, n in zip(info.class_names, info.class_counts, strict=True) if n == 0]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        log.warning(
            "%s: %d class(es) have no training videos: %s (they are evaluated, in the "
            "tail group, but cannot be learned)",
            info.name,
            len(missing),
            shown,
        )


def _only(results: list[dict[str, float]], prefix: str) -> dict[str, float]:
    merged: dict[str, float] = {}
    for r in results:
        merged.update({k[len(prefix) :]: float(v) for k, v in r.items() if k.startswith(prefix)})
    return merged


def _flat_hparams(resolved: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "dataset",
        "features",
        "aggregator",
        "strategy",
        "method",
        "seed",
        "run_name",
        "tags",
        "trainer",
    )
    return {k: resolved[k] for k in keep if k in resolved}


def run_description(cfg: DictConfig) -> dict[str, Any]:
    """What a run was (for reports, which read ``metrics.json`` and never W&B): the chosen
    config groups, the imbalance ratio, seed, epochs and, in a sweep, the sweep directory and
    job number with the job's overrides."""
    desc: dict[str, Any] = {}
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = hc.runtime.choices
        for group in ("dataset", "features", "aggregator", "strategy", "method", "experiment"):
            desc[group] = choices.get(group)
        desc["overrides"] = list(hc.overrides.task)
        if hc.mode == RunMode.MULTIRUN:
            desc["sweep_dir"] = str(hc.sweep.dir)
            desc["job_num"] = int(hc.job.num)
    # the same ratio W&B tags (ir:...): the load-time subsampling, else a synthetic dataset's
    # generated ratio; None for a store's own split
    ratio = imbalance_ratio(
        OmegaConf.select(cfg, "dataset.imbalance_ratio"),
        OmegaConf.select(cfg, "dataset.synthetic.imbalance_ratio"),
    )
    desc["imbalance_ratio"] = None if ratio == "natural" else ratio
    desc["seed"] = cfg.get("seed")
    desc["max_epochs"] = cfg.trainer.get("max_epochs")
    return desc


def _summary(cfg: DictConfig, result: dict[str, Any]) -> dict[str, Any]:
    info = result["info"]
    counts = info.class_counts
    groups = {name: int(mask.sum()) for name, mask in info.groups.items()}
    return {
        "run_name": cfg.get("run_name"),
        "run": run_description(cfg),
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


@rank_zero_only
def _report(output_dir: Path, cfg: DictConfig, info: Any, result: dict[str, Any]) -> None:
    payload = _summary(cfg, result)
    groups = payload["groups"]
    write_json_atomic(output_dir / "metrics.json", payload)
    if result["val"] or result["test"]:
        table = format_table({k: result[k] for k in ("val", "test") if result[k]})
        print(
            f"\n{info.name}: {info.num_classes} classes, groups head/medium/tail = "
            f"{groups['head']}/{groups['medium']}/{groups['tail']} "
            f"(best checkpoint on {payload['selected_on']})\n{table}\n"
            f"outputs: {output_dir}",
            flush=True,
        )
