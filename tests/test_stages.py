"""Multi-stage training: stage k+1 starts from stage k's best weights; start_stage/init_ckpt."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from vltr.training.train import train
from vltr.utils.errors import ConfigError

from conftest import TINY_OVERRIDES

FAST = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]


def staged(compose_cfg: Callable[..., DictConfig], *extra: str) -> DictConfig:
    cfg = compose_cfg(*FAST, "trainer.max_epochs=2", "logger=none", *extra)
    with open_dict(cfg):
        cfg.method.stages = OmegaConf.create(
            [
                {"schedule": {"optimizer": {"lr": 3e-3}}},
                {"schedule": {"optimizer": {"lr": 1e-4}}, "trainer": {"max_epochs": 1}},
            ]
        )
    return cfg


def test_two_stages_chain_weights(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = staged(compose_cfg)
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["stages"]) == {"stage1", "stage2"}
    assert summary["test"] == summary["stages"]["stage2"]["test"] == result["test"]
    s1 = torch.load(summary["stages"]["stage1"]["best_ckpt"], weights_only=False)
    s2 = torch.load(summary["stages"]["stage2"]["best_ckpt"], weights_only=False)
    assert Path(summary["stages"]["stage2"]["best_ckpt"]).is_relative_to(out / "stage2")
    # stage 2 trained on from stage 1's weights with its own optimiser settings: the weights
    # moved a little, not a fresh initialisation
    w1 = s1["state_dict"]["classifier.weight"]
    w2 = s2["state_dict"]["classifier.weight"]
    assert not torch.equal(w1, w2)
    assert (w2 - w1).norm() < 0.5 * w1.norm()
    assert s2["vltr"]["config"]["schedule"]["optimizer"]["lr"] == pytest.approx(1e-4)
    lrs = [g["lr"] for g in s2["optimizer_states"][0]["param_groups"]]
    assert lrs == [pytest.approx(1e-4)]


def test_start_stage_needs_init_ckpt(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = staged(compose_cfg, "start_stage=2")
    with pytest.raises(ConfigError, match="init_ckpt"):
        train(cfg)
