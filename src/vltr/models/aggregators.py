"""Temporal aggregators: ``[B, T, D]`` frame features (+ optional ``[B, T]`` mask) -> ``[B, H]``.

Plain ``nn.Module``s, no Lightning. Every aggregator exposes ``output_dim`` so the classifier
head can be sized without running it. A mask marks real frames (True); masked frames must not
influence the output.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of ``[B, T, H]``, counting only frames where ``mask`` is True."""
    if mask is None:
        return x.mean(dim=1)
    keep = mask.unsqueeze(-1)
    # where, not multiply: 0 * inf = NaN would let non-finite padding leak into the mean
    total = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / keep.sum(dim=1).clamp_min(1).to(x.dtype)


class NonLinearFrameAggregator(nn.Module):
    """VideoLT's non-linear baseline: per frame Linear(D -> H) -> ReLU -> Dropout, then the mean.

    The released model applies the final Linear(H -> C) per frame and averages the frame
    logits; because that layer is affine, averaging the hidden frames first and classifying once
    is the same function (and T times cheaper in the classifier), so the classifier lives in the
    shared head.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 2048, dropout: float = 0.5) -> None:
        super().__init__()
        self.frame_mlp = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.output_dim = hidden_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean(self.frame_mlp(x), mask)
