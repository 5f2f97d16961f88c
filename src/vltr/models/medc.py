"""MEDC's experts (Hu, Gao and Xu, IEEE TMM), §III-B/C: plain ``nn.Module``s, no Lightning.

Each expert ``k`` turns shared per-frame features ``s`` ``[B, T, H]`` (+ optional ``[B, T]``
mask, True = real frame) into a Gaussian embedding and class logits:

* ``h = phi_k(s)``: the expert's own per-frame MLP, Linear(H -> d) -> ReLU (eq. 4's ``phi``;
  the paper's "later ResNet stages", independent per expert);
* eq. 2, mean: ``mu = AvgPool_t(BN(FC(h_t)))`` (§IV-C: "the fully-connected layer, the batch
  normalization layer and the average layer"), ``[B, d]``;
* eq. 4, variance: temporal attention over the residuals ``r_t = h_t - mu``:
  ``alpha = softmax(f_q(r) f_k(r)^T / sqrt(d_k))`` (``[B, T, T]``, rows over key frames),
  ``sigma = softplus(sum_l abar_l f_v(|r_l|))`` with ``abar_l`` the attention frame ``l``
  receives averaged over the (real) query frames, ``[B, d]``, positive;
* eq. 5, ``z = mu + eps * sigma``, ``eps ~ N(0, I)``, only when asked to sample (training);
  ``z = mu`` otherwise (inference);
* eq. 6, ``logits = psi_k(z)``, Linear(d -> C).

``temporal_attention=False`` is Table II's "No Temporal-Attention" ablation: ``sigma`` from
FC -> BN -> temporal average of ``|r|`` (then softplus), no attention.

Masked (padded) frames have no influence on anything: the caller zeroes them before the shared
encoder, the BatchNorm statistics use real frames only, they are left out of every temporal
mean and get no attention.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vltr.models.aggregators import masked_mean


class MEDCOutput(NamedTuple):
    """The experts' outputs, stacked on a leading expert axis ``K``."""

    mu: torch.Tensor  # [K, B, d]
    sigma: torch.Tensor  # [K, B, d], positive
    logits: torch.Tensor  # [K, B, C], from z (sampled) or mu


def masked_batch_norm(
    bn: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``bn`` over the frames of ``x`` ``[B, T, d]``, statistics from real frames only.

    Masked frames come back as zeros (every consumer masks them anyway).
    """
    b, t, d = x.shape
    flat = x.reshape(b * t, d)
    if mask is None:
        return bn(flat).reshape(b, t, d)
    idx = mask.reshape(-1).nonzero().squeeze(1)
    normed = bn(flat.index_select(0, idx))
    return torch.zeros_like(flat).index_copy(0, idx, normed).reshape(b, t, d)


def mean_sigmoid_logits(expert_logits: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``logit(mean_k sigmoid(l_k))`` along ``dim``, stable for any logits.

    ``log p = LSE_k log sigmoid(l_k) - log K`` and ``log(1 - p) = LSE_k log sigmoid(-l_k) -
    log K``; their difference (the ``log K`` cancel) is the logit of the mean probability, with
    no ``sigmoid`` saturating to 0 or 1 on the way (rankings of confident scores survive).
    """
    logits = expert_logits.float()
    return torch.logsumexp(F.logsigmoid(logits), dim=dim) - torch.logsumexp(
        F.logsigmoid(-logits), dim=dim
    )


class TemporalVarianceAttention(nn.Module):
    """Eq. 4: ``sigma`` from single-head temporal self-attention over ``h - mu``."""

    def __init__(self, dim: int, attention_dim: int | None = None) -> None:
        super().__init__()
        dk = attention_dim or dim
        self.query = nn.Linear(dim, dk)
        self.key = nn.Linear(dim, dk)
        self.value = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dk)

    def forward(
        self, h: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        r = h - mu.unsqueeze(1)  # [B, T, d]
        scores = self.query(r) @ self.key(r).transpose(1, 2) * self.scale  # [B, Tq, Tk]
        if mask is not None:
            # finite fill: a softmax row of only masked keys stays finite (no NaN gradients)
            scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        alpha = scores.softmax(dim=-1)
        # eq. 4 sums over frames l once: the attention each key frame receives, averaged over
        # the real query frames (= averaging the per-query outputs, without the [B, T, d] sum)
        alpha_bar = masked_mean(alpha, mask)  # [B, Tk]
        if mask is not None:
            alpha_bar = alpha_bar.masked_fill(~mask, 0.0)  # padded frames carry no value
        # sum_l abar_l f_v(|r_l|) = W_v (sum_l abar_l |r_l|) + b_v sum_l abar_l: the weighted
        # mean first, then one value projection per video (not one per frame)
        pooled = torch.einsum("bt,btd->bd", alpha_bar, r.abs())
        values = F.linear(pooled, self.value.weight)
        if self.value.bias is not None:
            values = values + self.value.bias * alpha_bar.sum(dim=1, keepdim=True)
        return F.softplus(values)


class PooledVariance(nn.Module):
    """Table II "No Temporal-Attention": ``sigma = softplus(AvgPool_t(BN(FC(|h - mu|))))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.bn = nn.BatchNorm1d(dim)

    def forward(
        self, h: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        r = (h - mu.unsqueeze(1)).abs()
        return F.softplus(masked_mean(masked_batch_norm(self.bn, self.fc(r), mask), mask))


class MEDCExpert(nn.Module):
    """One expert: frame MLP ``phi``, mean head (eq. 2), variance (eq. 4), classifier (eq. 6)."""

    def __init__(
        self,
        input_dim: int,
        embed_dim: int,
        num_classes: int,
        attention_dim: int | None = None,
        temporal_attention: bool = True,
        classifier: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.frame_mlp = nn.Sequential(nn.Linear(input_dim, embed_dim), nn.ReLU(inplace=True))
        self.mean_fc = nn.Linear(embed_dim, embed_dim)
        self.mean_bn = nn.BatchNorm1d(embed_dim)
        self.variance: nn.Module = (
            TemporalVarianceAttention(embed_dim, attention_dim)
            if temporal_attention
            else PooledVariance(embed_dim)
        )
        # psi (eq. 6): ``classifier(embed_dim)`` when given (the run's head), else one Linear
        self.classifier = (
            classifier(embed_dim) if classifier is not None else nn.Linear(embed_dim, num_classes)
        )

    def _h_mu(
        self, frames: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.frame_mlp(frames)
        mu = masked_mean(masked_batch_norm(self.mean_bn, self.mean_fc(h), mask), mask)
        return h, mu

    def forward(
        self, frames: torch.Tensor, mask: torch.Tensor | None = None, sample: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, sigma, logits)``; logits from ``z = mu + eps sigma`` if ``sample`` else
        from ``mu``."""
        h, mu = self._h_mu(frames, mask)
        sigma = self.variance(h, mu, mask)
        z = mu + torch.randn_like(sigma) * sigma if sample else mu  # eq. 5
        return mu, sigma, self.classifier(z)

    def mean_logits(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: ``psi(mu)``, without computing the variance branch."""
        return self.classifier(self._h_mu(frames, mask)[1])


class MEDCExperts(nn.Module):
    """``num_experts`` independent experts over the same shared frame features."""

    def __init__(
        self,
        input_dim: int,
        num_experts: int,
        embed_dim: int,
        num_classes: int,
        attention_dim: int | None = None,
        temporal_attention: bool = True,
        classifier: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"MEDC needs at least one expert, got {num_experts}")
        self.experts = nn.ModuleList(
            MEDCExpert(
                input_dim, embed_dim, num_classes, attention_dim, temporal_attention, classifier
            )
            for _ in range(num_experts)
        )
        self.embed_dim = embed_dim

    def __len__(self) -> int:
        return len(self.experts)

    def forward(
        self, frames: torch.Tensor, mask: torch.Tensor | None = None, sample: bool = False
    ) -> MEDCOutput:
        mus, sigmas, logits = zip(*(e(frames, mask, sample) for e in self.experts), strict=True)
        return MEDCOutput(torch.stack(mus), torch.stack(sigmas), torch.stack(logits))

    def mean_logits(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[K, B, C]`` logits of every expert from its mean ``mu`` (inference)."""
        return torch.stack([e.mean_logits(frames, mask) for e in self.experts])
