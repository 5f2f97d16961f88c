"""Build the run's objects from config with Hydra ``instantiate``: the one way objects are made."""

from __future__ import annotations

from inspect import signature
from typing import Any

import lightning as L
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from vltr.data.datamodule import DatasetInfo, VideoFeatureDataModule


def build_datamodule(cfg: DictConfig) -> VideoFeatureDataModule:
    """The dataset's DataModule, with the strategy's training sampler (CBS/SRS) if it has one."""
    sampler = cfg.strategy.get("sampler") if cfg.get("strategy") is not None else None
    extra = {"sampler": instantiate(sampler)} if sampler is not None else {}
    return instantiate(cfg.dataset, _convert_="all", **extra)


def build_module(cfg: DictConfig, info: DatasetInfo) -> L.LightningModule:
    """The method's LightningModule around the chosen aggregator and the strategy's loss."""
    aggregator = instantiate(cfg.aggregator, input_dim=info.dim)
    loss = instantiate(cfg.strategy.loss, class_counts=info.class_counts.tolist())
    transform = cfg.strategy.get("batch_transform")
    extra: dict[str, Any] = {}
    takes_head = "head" in signature(get_object(cfg.method._target_)).parameters
    if cfg.get("head") is not None and takes_head:
        extra["head"] = instantiate(cfg.head, _partial_=True)  # (input_dim, num_classes) -> head
    return instantiate(
        cfg.method,
        **extra,
        batch_transform=instantiate(transform) if transform is not None else None,
        aggregator=aggregator,
        num_classes=info.num_classes,
        loss=loss,
        class_counts=info.class_counts.tolist(),
        head_min=info.head_min,
        tail_max=info.tail_max,
    )


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
