"""``vltr-eval ckpt_path=PATH``: evaluate a checkpoint written by ``vltr-train``.

The checkpoint carries its run's resolved config (model, strategy, dataset), so nothing else is
needed. ``dataset=...`` (and ``features=...``) evaluate the same model on another store with
the same classes. Writes ``metrics.json`` and ``per_class_ap_{split}.csv`` to the eval run's
output directory.

``eval.test_distribution=uniform|longtailed|inverse`` (or a list) also scores the test
predictions under those class distributions, by resampling the test split
(:mod:`vltr.evaluation.resample`, docs/evaluation.md): the predictions are computed once, by the
test loop; ``metrics.json`` gets a ``test_distribution`` block ``{name: {metric: mean,
metric_std: std}}`` and the printed table a row per distribution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from vltr.evaluation.resample import parse_distributions
from vltr.evaluation.tables import format_table
from vltr.training.builders import build_datamodule, build_module
from vltr.training.callbacks import PerClassAPWriter, ResampledTestMetrics
from vltr.training.checkpoints import check_weights_fit, load_checkpoint, stored_run_config
from vltr.training.config import EvalSchema, require_values, validate_config
from vltr.utils.errors import ConfigError
from vltr.utils.io import write_json_atomic

log = logging.getLogger("vltr.training.evaluate")


def load_run_config(ckpt_path: str | Path, allowed_targets: Sequence[str] = ()) -> DictConfig:
    """The run config stored in a vltr checkpoint, read weights-only and checked
    (:func:`vltr.training.checkpoints.stored_run_config`)."""
    return stored_run_config(load_checkpoint(ckpt_path, "ckpt_path"), ckpt_path, allowed_targets)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.splits``; return ``{split: metrics}``."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError("ckpt_path is required: vltr-eval ckpt_path=PATH/TO/checkpoint.ckpt")
    validate_config(cfg, EvalSchema)
    require_values(cfg)
    options = _resample_options(cfg)
    ckpt_path = str(cfg.ckpt_path)
    ckpt = load_checkpoint(ckpt_path, "ckpt_path")
    allowed = list((cfg.get("eval") or {}).get("allowed_targets") or [])
    run_cfg = stored_run_config(ckpt, ckpt_path, allowed)
    output_dir = Path(cfg.paths.output_dir)
    with open_dict(run_cfg):
        if cfg.get("dataset") is not None:
            # resolve the new dataset node against this eval's features (or the run's)
            scope = OmegaConf.create(
                {
                    "paths": cfg.paths,
                    "features": cfg.features
                    if cfg.get("features") is not None
                    else run_cfg.features,
                    "dataset": cfg.dataset,
                }
            )
            run_cfg.dataset = OmegaConf.to_container(scope.dataset, resolve=True)
            run_cfg.features = OmegaConf.to_container(scope.features, resolve=True)
        # this evaluation's own folders: a synthetic dataset is cached in this run's data_dir,
        # never in the directory recorded in the checkpoint
        run_cfg.paths = OmegaConf.to_container(cfg.paths, resolve=True)
        if "data_dir" in run_cfg.dataset:
            run_cfg.dataset.data_dir = run_cfg.paths.data_dir
        run_cfg.trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
        run_cfg.paths.output_dir = str(output_dir)

    datamodule = build_datamodule(run_cfg)
    info = datamodule.info()
    model = build_module(run_cfg, info)
    # another class count or feature dim: one line here, not a size-mismatch traceback later
    check_weights_fit(
        ckpt["state_dict"],
        model,
        ckpt_path,
        "ckpt_path",
        strict=True,
        data=f"{info.num_classes} classes, {info.dim}-dim features",
    )
    del ckpt
    callbacks: list[Any] = [PerClassAPWriter(str(output_dir), info)]
    if options["distributions"]:
        callbacks.append(
            ResampledTestMetrics(
                info, options["distributions"], options["repeats"], options["seed"], options["size"]
            )
        )
    trainer = instantiate(run_cfg.trainer, logger=False, callbacks=callbacks)
    resampled: dict[str, dict[str, float]] = {}
    results: dict[str, Any] = {}
    for split in cfg.splits:
        if split == "val":
            out = trainer.validate(
                model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
            )
        elif split == "test":
            out = trainer.test(
                model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
            )
        else:
            raise ConfigError(f"splits: unknown split {split!r} (use val, test)")
        prefix = f"{split}/"
        results[split] = {
            k[len(prefix) :]: float(v) for r in out for k, v in r.items() if k.startswith(prefix)
        }
        if split == "test":
            resampled = _resampled_results(out, options["distributions"])
    if trainer.is_global_zero:
        extra: dict[str, Any] = {}
        table = format_table(results)
        if resampled:
            extra = {
                "test_distribution": resampled,
                "test_distribution_settings": {
                    "repeats": options["repeats"],
                    "seed": options["seed"],
                    "size": options["size"],
                    "primary_class": "rarest positive by training count",
                },
            }
            size = f"{options['size']} videos" if options["size"] else "the split's size"
            table += (
                f"\n\ntest split resampled to class distributions (mean of "
                f"{options['repeats']} sets of {size}; std in metrics.json)\n"
                + format_table(resampled)
            )
        write_json_atomic(
            output_dir / "metrics.json",
            {"ckpt_path": ckpt_path, "dataset": info.name, **results, **extra},
        )
        print(f"\n{info.name} ({ckpt_path})\n{table}\noutputs: {output_dir}", flush=True)
    if resampled:
        results["test_distribution"] = resampled
    return results


def _resample_options(cfg: DictConfig) -> dict[str, Any]:
    """``eval.*`` checked before anything is built (bad values: one line, exit 2)."""
    opts = cfg.get("eval") or {}
    value = opts.get("test_distribution")
    if isinstance(value, ListConfig):
        value = list(value)
    distributions = parse_distributions(value)
    repeats, size = int(opts.get("resample_repeats", 5)), opts.get("resample_size")
    if distributions and "test" not in cfg.splits:
        raise ConfigError("eval.test_distribution resamples the test split: add test to splits")
    if repeats < 1:
        raise ConfigError(f"eval.resample_repeats: must be >= 1, got {repeats}")
    if size is not None and int(size) < 1:
        raise ConfigError(f"eval.resample_size: must be >= 1 or null, got {size}")
    return {
        "distributions": distributions,
        "repeats": repeats,
        "seed": int(opts.get("seed", 0)),
        "size": None if size is None else int(size),
    }


def _resampled_results(out: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """``{name: {metric: value}}`` from ``test_distribution/<name>/<metric>`` logged values,
    in the order the distributions were asked for."""
    prefix = f"{ResampledTestMetrics.PREFIX}/"
    found: dict[str, dict[str, float]] = {}
    for r in out:
        for key, value in r.items():
            if key.startswith(prefix):
                name, metric = key[len(prefix) :].split("/", 1)
                found.setdefault(name, {})[metric] = float(value)
    return {name: found[name] for name in names if name in found}
