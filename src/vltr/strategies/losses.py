"""Multi-label classification losses. Every loss takes logits ``[B, C]`` and (soft) targets
``[B, C]`` and returns a scalar; constructors accept ``class_counts`` (training counts per
class) so re-weighting losses can be swapped in through config without changing the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BinaryCrossEntropy(nn.Module):
    """Sigmoid BCE averaged over samples and classes (the VideoLT baseline's loss)."""

    def __init__(self, class_counts: Sequence[int] | None = None) -> None:
        super().__init__()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets)
