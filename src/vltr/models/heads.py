"""Classifier heads: ``[B, input_dim]`` video embedding -> ``[B, num_classes]`` logits.

Plain ``nn.Module``s built by Hydra (``head=linear|nonlinear``) with the aggregator's
``output_dim`` and the dataset's class count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def output_layer(head: nn.Module) -> nn.Linear:
    """The last ``Linear`` of a head (its bias is the logits' offset)."""
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not layers or layers[-1].bias is None:
        raise ValueError(f"{type(head).__name__} ends in no Linear with a bias")
    return layers[-1]


def init_prior_bias(head: nn.Module, class_prior: torch.Tensor | Sequence[float]) -> None:
    """Start the head's output biases at ``logit(p_c)`` of a class prior ``p`` (clamped to
    ``[1e-6, 1 - 1e-6]``), so that the first steps do not go into moving every bias down from 0
    (Adam moves a bias by about the learning rate per step)."""
    p = torch.as_tensor(class_prior, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    with torch.no_grad():
        output_layer(head).bias.copy_((torch.log(p) - torch.log1p(-p)).float())


class LinearHead(nn.Linear):
    """One ``Linear(input_dim -> num_classes)``: VideoLT's baselines after their aggregator
    (the non-linear frame MLP's last layer, NetVLAD's ``pred_fc``). ``prior_bias_init``: the
    module building it starts the biases at the training label frequencies
    (:func:`init_prior_bias`; not in the papers)."""

    def __init__(self, input_dim: int, num_classes: int, prior_bias_init: bool = False) -> None:
        super().__init__(input_dim, num_classes)
        self.prior_bias_init = bool(prior_bias_init)


class NonLinearHead(nn.Sequential):
    """VideoLT's ``NonlinearClassifier`` on a video embedding: ``Linear(input_dim -> hidden)``,
    ReLU, Dropout, ``Linear(hidden -> num_classes)``; hidden 2048 and dropout 0.5 as released.

    MOVE classifies its 3,072-d dual-aggregator embedding with it (appendix, released
    ``MOVE.py``); on one embedding per video, VideoLT's per-frame logit average is the same
    function.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_dim: int = 2048,
        dropout: float = 0.5,
        prior_bias_init: bool = False,
    ) -> None:
        super().__init__(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )
        self.prior_bias_init = bool(prior_bias_init)

    @property
    def hidden_dim(self) -> int:
        return self[0].out_features
