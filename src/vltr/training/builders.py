"""Build the run's objects from config with Hydra ``instantiate``: the one way objects are made."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, open_dict

from vltr.data.datamodule import DatasetInfo, VideoFeatureDataModule
from vltr.methods.base import MethodSetup
from vltr.training.config import METHOD_ONLY_KEYS
from vltr.utils.errors import ConfigError


def build_datamodule(cfg: DictConfig) -> VideoFeatureDataModule:
    """The dataset's DataModule, with the strategy's training sampler (CBS/SRS) if it has one."""
    sampler = cfg.strategy.get("sampler") if cfg.get("strategy") is not None else None
    extra = {"sampler": instantiate(sampler)} if sampler is not None else {}
    return instantiate(cfg.dataset, _convert_="all", **extra)


def check_composition(cfg: DictConfig) -> None:
    """A strategy the method does not compose with fails here, in one line."""
    method = get_object(cfg.method._target_)
    accepted = getattr(method, "strategies", None)
    name = cfg.strategy.get("name")
    if accepted is not None and name is not None and name not in accepted:
        raise ConfigError(
            f"strategy={name} does not compose with {method.__name__} "
            f"(choose one of: {', '.join(accepted)})"
        )


def method_config(cfg: DictConfig) -> DictConfig:
    """``cfg.method`` without the keys that are not constructor arguments (``stages``); a copy
    that keeps its root, so interpolations such as ``${dataset.clip_frames}`` still resolve."""
    root = copy.deepcopy(cfg)
    with open_dict(root):
        for key in METHOD_ONLY_KEYS:
            root.method.pop(key, None)
    return root.method


def build_setup(cfg: DictConfig, info: DatasetInfo) -> MethodSetup:
    """The aggregator, head, loss, batch transform and schedule every method is built from."""
    counts = info.class_counts.tolist()
    transform = cfg.strategy.get("batch_transform")
    head = cfg.get("head")
    scheduler = cfg.schedule.get("scheduler")
    return MethodSetup(
        aggregator=instantiate(cfg.aggregator, input_dim=info.dim),
        head=instantiate(head, _partial_=True) if head is not None else None,
        loss=instantiate(cfg.strategy.loss, class_counts=counts),
        batch_transform=instantiate(transform) if transform is not None else None,
        optimizer=instantiate(cfg.schedule.optimizer),
        scheduler=instantiate(scheduler) if scheduler is not None else None,
        class_counts=counts,
        head_min=info.head_min,
        tail_max=info.tail_max,
    )


def build_module(cfg: DictConfig, info: DatasetInfo) -> L.LightningModule:
    """The method's LightningModule, built from :func:`build_setup` and its own config keys."""
    check_composition(cfg)
    return instantiate(method_config(cfg), setup=build_setup(cfg, info))


def compile_model(model: L.LightningModule) -> list[str]:
    """``torch.compile`` the method's frame-level parts (``compile_targets``) in place, so the
    checkpoint's weight names stay those of an uncompiled run; the compiled class names."""
    targets = model.compile_targets()
    for part in targets:
        part.compile()
    return [type(part).__name__ for part in targets]


def build_callbacks(cfg: DictConfig | None, has_logger: bool) -> list[L.Callback]:
    callbacks: list[L.Callback] = []
    for name, node in (cfg or {}).items():
        if node is None:
            continue  # disabled with callbacks.NAME=null
        if name == "lr_monitor" and not has_logger:
            continue  # LearningRateMonitor refuses to run without a logger
        callbacks.append(instantiate(node))
    return callbacks


def build_loggers(cfg: DictConfig | None) -> list[Any]:
    return [instantiate(node) for node in (cfg or {}).values() if node is not None]
