"""Every strategy with every main aggregator trains one tiny epoch and evaluates (in-process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from vltr.training.train import train

from conftest import TINY_OVERRIDES

CONF = resources.files("vltr.conf")
STRATEGIES = sorted(
    p.name[:-5] for p in CONF.joinpath("strategy").iterdir() if p.name.endswith(".yaml")
)
AGGREGATORS = ["nonlinear", "netvlad", "psa", "move_dual"]
ONE_EPOCH = [
    o for o in TINY_OVERRIDES if not o.startswith(("trainer.max_epochs", "aggregator.hidden_dim"))
]


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_aggregator_matrix(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, strategy: str, aggregator: str
) -> None:
    if not CONF.joinpath("aggregator", f"{aggregator}.yaml").is_file():
        pytest.fail(f"aggregator config {aggregator}.yaml is missing")
    cfg = compose_cfg(
        *ONE_EPOCH,
        f"strategy={strategy}",
        f"aggregator={aggregator}",
        "trainer.max_epochs=1",
        "logger=none",
        "+trainer.limit_train_batches=4",
    )
    with open_dict(cfg):
        cfg.callbacks.model_checkpoint.save_last = False
    result = train(cfg)
    for split in ("val", "test"):
        assert 0.0 <= result[split]["mAP"] <= 1.0, (split, result[split])
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["test"]


def test_strategy_parts_are_wired(compose_cfg: Callable[..., DictConfig]) -> None:
    from vltr.data.samplers import ClassAwareSampler
    from vltr.strategies.mixup import FeatureMixup
    from vltr.training.builders import build_datamodule, build_module

    cfg = compose_cfg(*ONE_EPOCH, "strategy=srs", "seed=7")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, ClassAwareSampler)
    assert sampler.power == 0.5 and sampler.seed == 7 and len(sampler) == len(dm.train_set)
    assert not isinstance(build_datamodule(compose_cfg(*ONE_EPOCH)).info(), type(None))

    cfg = compose_cfg(*ONE_EPOCH, "strategy=mixup", "strategy.batch_transform.level=embedding")
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm.info())
    assert isinstance(module.batch_transform, FeatureMixup)
    assert module.batch_transform.level == "embedding"
