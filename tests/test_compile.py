"""``compile=true``: each method's compile targets are the modules its training step runs on
frames (so compiling them is not a no-op), and a method compiled in place computes the same
loss and keeps the weight names of an uncompiled run (checkpoints stay interchangeable)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from vltr.data.datamodule import DatasetInfo, VideoBatch
from vltr.data.longtail import exponential_profile
from vltr.training.builders import build_module, compile_model

CLASSES, DIM, FRAMES = 6, 32, 8
SMALL = ["features.dim=32", "features.frames=24"]
METHODS = {
    "base": ["aggregator.hidden_dim=16"],
    "framestack": ["method=framestack", "method.clip_length=8", "aggregator.hidden_dim=16"],
    "move": [
        "method=move",
        "aggregator.attentive_dim=16",
        "aggregator.codebook_dim=16",
        "aggregator.num_clusters=4",
    ],
    "medc": ["method=medc", "method.embed_dim=16", "aggregator.hidden_dim=16"],
    "meid stage 1": ["method=meid", "aggregator.attention_dim=16"],
    "meid stage 2": ["method=meid", "method.stage=2", "aggregator.attention_dim=16"],
}


def small_info() -> DatasetInfo:
    return DatasetInfo(
        name="small",
        num_classes=CLASSES,
        frames=24,
        dim=DIM,
        class_names=[f"c{i}" for i in range(CLASSES)],
        class_counts=exponential_profile(CLASSES, 60, 0.1),
        head_min=30,
        tail_max=10,
    )


def batch_of(seed: int, n: int = 12) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    targets = torch.zeros(n, CLASSES)
    targets[torch.arange(n), torch.arange(n) % CLASSES] = 1.0
    frames = torch.randn(n, 2 * FRAMES, DIM, generator=g)
    return VideoBatch(
        features=frames[:, :FRAMES],
        targets=targets,
        index=torch.arange(n),
        next_features=frames[:, FRAMES:],
    )


def training_batch(module: torch.nn.Module) -> VideoBatch | dict[str, VideoBatch]:
    if getattr(module, "distribution", None) == "resample":  # MEDC: one batch per stream
        return {name: batch_of(k) for k, name in enumerate(dict.fromkeys(module.expert_names))}
    return batch_of(0)


@pytest.mark.parametrize("method", list(METHODS))
def test_compile_targets_run_in_every_training_step(
    compose_cfg: Callable[..., DictConfig], method: str
) -> None:
    torch.manual_seed(0)
    module = build_module(compose_cfg(*SMALL, *METHODS[method]), small_info())
    module.train()
    targets = module.compile_targets()
    assert targets
    called: set[int] = set()
    for part in targets:
        part.register_forward_hook(lambda mod, inp, out: called.add(id(mod)))
    loss = module.training_loss(module.transform_batch(training_batch(module)))
    assert torch.isfinite(loss)
    missed = [type(p).__name__ for p in targets if id(p) not in called]
    assert not missed, f"{method}: compiled but never called in training: {missed}"


def test_compiled_move_gives_the_eager_loss_and_keeps_weight_names(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg(*SMALL, *METHODS["move"], "compile=true")
    assert cfg.compile is True  # a known key of the run config
    torch.manual_seed(0)
    module = build_module(cfg, small_info())
    module.train()
    names = list(module.state_dict())
    batch = training_batch(module)

    def loss_and_grads() -> tuple[torch.Tensor, list[np.ndarray]]:
        torch.manual_seed(1)  # the same frame sampling and mixing draws both times
        module.zero_grad()
        loss = module.training_loss(module.transform_batch(batch))
        loss.backward()
        grads = [p.grad.numpy().copy() for p in module.aggregator.parameters()]
        return loss.detach(), grads

    eager, eager_grads = loss_and_grads()
    assert compile_model(module) == ["MoveDualAggregator"]
    compiled, compiled_grads = loss_and_grads()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert list(module.state_dict()) == names
