"""Small layers shared by the aggregators: frame masking, masked BatchNorm, context gating."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def zero_masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` with the frames where ``mask`` is False set to 0 (``[B, T, D]``, ``[B, T]``).

    ``masked_fill``, not a product: ``0 * inf`` would let non-finite padding through.
    """
    return x if mask is None else x.masked_fill(~mask.unsqueeze(-1), 0.0)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the channels of ``[B, C]`` vectors or of the real frames of ``[B, T, C]``.

    With a ``[B, T]`` mask (True = real frame) the batch statistics, and so the running
    statistics, come from the real frames only: padded frames (or the frames a method leaves
    out of a view) never move them, and their outputs are 0. A training batch with a single
    value per channel (one real frame, one video) cannot give a variance; it is normalised with
    the running statistics instead of raising.
    """

    def _normalise(self, flat: torch.Tensor) -> torch.Tensor:
        if self.training and flat.shape[0] > 1:
            return super().forward(flat)
        return F.batch_norm(
            flat, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 2:
            return self._normalise(x)
        b, t, c = x.shape
        if mask is None:
            return self._normalise(x.reshape(b * t, c)).view(b, t, c)
        out = x.new_zeros(b, t, c)
        if bool(mask.any()):
            out[mask] = self._normalise(x[mask])
        return out


class ContextGating(nn.Module):
    """Context gating (Miech et al. 2017, the YouTube-8M "learnable pooling" paper).

    ``y = sigmoid(W x + b) * x``, element-wise, on a video-level vector.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x)) * x
