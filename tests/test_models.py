"""Baseline aggregator and the shared LightningModule pieces."""

from __future__ import annotations

import torch
from torch import nn

from vltr.models.aggregators import NonLinearFrameAggregator, masked_mean
from vltr.strategies.losses import BinaryCrossEntropy


def test_nonlinear_equals_videolt_per_frame_logit_average() -> None:
    torch.manual_seed(0)
    agg = NonLinearFrameAggregator(input_dim=16, hidden_dim=32).eval()
    head = nn.Linear(32, 5)
    x = torch.randn(3, 7, 16)
    # VideoLT's model: classifier on every frame, then the mean of the frame logits
    per_frame = head(agg.frame_mlp(x)).mean(dim=1)
    torch.testing.assert_close(head(agg(x)), per_frame)


def test_masked_frames_have_no_effect() -> None:
    torch.manual_seed(0)
    agg = NonLinearFrameAggregator(input_dim=8, hidden_dim=12).eval()
    x = torch.randn(2, 10, 8)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, :6] = True
    out = agg(x, mask)
    y = x.clone()
    y[:, 6:] = 1e3  # garbage in masked frames
    torch.testing.assert_close(agg(y, mask), out)
    torch.testing.assert_close(out, agg(x[:, :6]))
    assert masked_mean(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool)).abs().sum() == 0


def test_gradients_reach_every_parameter() -> None:
    agg = NonLinearFrameAggregator(input_dim=8, hidden_dim=12)
    head = nn.Linear(12, 4)
    loss = BinaryCrossEntropy()(head(agg(torch.randn(5, 6, 8))), torch.ones(5, 4))
    loss.backward()
    for p in [*agg.parameters(), *head.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_bce_matches_definition() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(BinaryCrossEntropy(class_counts=[3, 1])(logits, y), expected)
