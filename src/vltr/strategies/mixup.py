"""Mixup in feature space (Zhang et al. 2018), as VideoLT's mixup baseline.

VideoLT mixes two videos of a batch frame by frame before aggregation, with one lambda ~
Beta(1, 1) per batch and a random permutation of the batch as partners; targets are mixed with
the same lambda. ``level="embedding"`` mixes the aggregated video embeddings instead (manifold
mixup, Verma et al. 2019), the option the issue asks for.
"""

from __future__ import annotations

import torch


class FeatureMixup:
    """``mix(x, y) -> (lam x + (1 - lam) x[perm], lam y + (1 - lam) y[perm])``.

    ``alpha``: Beta(alpha, alpha) for lambda (VideoLT: 1.0). ``level``: ``"frames"`` (mix the
    ``[B, T, D]`` frame features before aggregation) or ``"embedding"`` (mix ``[B, H]`` after
    aggregation). ``per_sample``: one lambda per sample instead of one per batch (VideoLT: per
    batch). The random state comes from torch's generator, which ``seed_everything`` seeds.
    """

    def __init__(self, alpha: float = 1.0, level: str = "frames", per_sample: bool = False) -> None:
        if level not in ("frames", "embedding"):
            raise ValueError(f"mixup level must be 'frames' or 'embedding', got {level!r}")
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be positive, got {alpha}")
        self.alpha = float(alpha)
        self.level = level
        self.per_sample = per_sample
        self._beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))

    def sample(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(partner permutation ``[B]``, lambda ``[B]``)."""
        perm = torch.randperm(batch_size, device=device)
        lam = self._beta.sample((batch_size if self.per_sample else 1,)).to(device)
        return perm, lam.expand(batch_size)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        perm, lam = self.sample(x.shape[0], x.device)
        lam_x = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        lam_y = lam.view(-1, 1).to(y.dtype)
        return lam_x * x + (1 - lam_x) * x[perm], lam_y * y + (1 - lam_y) * y[perm]
