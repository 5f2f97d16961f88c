"""Same seed, same metrics (CPU); another seed, other metrics."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from vltr.training.train import train

from conftest import TINY_OVERRIDES

FAST = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]


def run(compose_cfg: Callable[..., DictConfig], seed: int, workers: int) -> dict:
    cfg = compose_cfg(
        *FAST,
        "trainer.max_epochs=2",
        "logger=none",
        f"seed={seed}",
        "trainer.deterministic=true",
        f"dataset.num_workers={workers}",
        "strategy=mixup",
    )
    return train(cfg)


def test_same_seed_same_metrics(compose_cfg: Callable[..., DictConfig]) -> None:
    a, b = run(compose_cfg, 3, 0), run(compose_cfg, 3, 0)
    assert a["val"] == b["val"] and a["test"] == b["test"]
    c = run(compose_cfg, 4, 0)
    assert c["test"] != a["test"]


def test_same_seed_same_metrics_with_workers(compose_cfg: Callable[..., DictConfig]) -> None:
    a, b = run(compose_cfg, 5, 2), run(compose_cfg, 5, 2)
    assert a["test"] == b["test"]
