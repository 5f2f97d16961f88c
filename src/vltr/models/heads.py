"""Classifier heads: ``[B, input_dim]`` video embedding -> ``[B, num_classes]`` logits.

Plain ``nn.Module``s built by Hydra (``head=linear|nonlinear``) with the aggregator's
``output_dim`` and the dataset's class count.
"""

from __future__ import annotations

from torch import nn


class LinearHead(nn.Linear):
    """One ``Linear(input_dim -> num_classes)``: VideoLT's baselines after their aggregator
    (the non-linear frame MLP's last layer, NetVLAD's ``pred_fc``)."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__(input_dim, num_classes)


class NonLinearHead(nn.Sequential):
    """VideoLT's ``NonlinearClassifier`` on a video embedding: ``Linear(input_dim -> hidden)``,
    ReLU, Dropout, ``Linear(hidden -> num_classes)``; hidden 2048 and dropout 0.5 as released.

    MOVE classifies its 3,072-d dual-aggregator embedding with it (appendix, released
    ``MOVE.py``); on one embedding per video, VideoLT's per-frame logit average is the same
    function.
    """

    def __init__(
        self, input_dim: int, num_classes: int, hidden_dim: int = 2048, dropout: float = 0.5
    ) -> None:
        super().__init__(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    @property
    def hidden_dim(self) -> int:
        return self[0].out_features
