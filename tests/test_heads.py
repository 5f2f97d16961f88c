"""Classifier heads: the prior-initialised output bias option, through the module builder."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from vltr.data.longtail import label_distribution
from vltr.methods.base import MethodSetup, VideoRecognitionModule
from vltr.models.aggregators import NonLinearFrameAggregator
from vltr.models.heads import LinearHead, NonLinearHead, output_layer
from vltr.strategies.losses import BinaryCrossEntropy

COUNTS = [300, 60, 12, 3]


def module_with(head: Callable[[int, int], torch.nn.Module]) -> VideoRecognitionModule:
    setup = MethodSetup(
        aggregator=NonLinearFrameAggregator(8, hidden_dim=16),
        loss=BinaryCrossEntropy(),
        optimizer=functools.partial(torch.optim.Adam),
        class_counts=COUNTS,
        head=head,
    )
    return VideoRecognitionModule(setup)


@pytest.mark.parametrize("head_cls", [LinearHead, NonLinearHead])
def test_prior_bias_init_starts_at_the_label_frequencies(head_cls: type) -> None:
    torch.manual_seed(0)
    module = module_with(functools.partial(head_cls, prior_bias_init=True))
    p = torch.as_tensor(label_distribution(COUNTS), dtype=torch.float32)
    bias = output_layer(module.classifier).bias
    torch.testing.assert_close(torch.sigmoid(bias), p)
    # off (the default): PyTorch's own initialisation, small and not ordered by frequency
    plain = module_with(head_cls)
    assert output_layer(plain.classifier).bias.abs().max() < 1.0


def test_head_configs_expose_the_option(compose_cfg: Callable[..., DictConfig]) -> None:
    for head in ("linear", "nonlinear"):
        cfg = compose_cfg(f"head={head}", "head.prior_bias_init=true")
        assert cfg.head.prior_bias_init is True
