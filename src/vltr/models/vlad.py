"""Codebook temporal aggregators: NetVLAD (VideoLT, MOVE), NetVLAGD and NeXtVLAD (MEID).

``[B, T, D]`` frame features (+ optional ``[B, T]`` bool mask, True = real frame) ->
``[B, output_dim]``. Masking is exact: masked frames are zero-filled before any layer sees
them (so even inf/NaN padding cannot leak through ``0 * x``), they are left out of every
BatchNorm's statistics (:class:`~vltr.models.layers.MaskedBatchNorm1d`) and their assignment
weights are exactly 0, so they add nothing to any sum; a row with no real frame aggregates to
the zero descriptor and yields a finite output.

Normalisation (``batch_norm=True``, the default) follows the reference implementations, which
every published number of these aggregators comes from:

* NetVLAD / NetVLAGD (VideoLT's ``NetVLADModel``, MOVE's ``NetVLAD_Dynamic_Aggregator``, both
  LOUPE's code): BatchNorm on the input frames, a bias-free assignment ``Linear`` followed by a
  BatchNorm on its logits (in place of eq. 3's bias ``b_k``), and after the normalised
  descriptor a bias-free hidden ``Linear`` followed by BatchNorm and ReLU6.
* NeXtVLAD (Lin, Xiao and Fan's code): a bias-free assignment ``Linear`` with a BatchNorm on
  its logits, a BatchNorm on the intra-normalised descriptor in place of the global L2, and a
  bias-free hidden ``Linear`` followed by BatchNorm.

Why it matters: without it the hidden ``Linear`` reads an L2-normalised ``K * D`` vector, so
its output is ``~1 / sqrt(3 K D)`` at initialisation: 0.018 at ``K = 16, D = 64`` and 0.0016 at
VideoLT's ``K = 64, D = 2048``, 30-350x below a ReLU-MLP's or PSA's output, and a classifier
(or a concatenation with another branch, MOVE's eq. 4) barely sees it (measured scales in
docs/methods/aggregators.md). ``batch_norm=False`` gives the papers' equations without the
BatchNorms (eq. 3 with its bias ``b_k``, a plain hidden ``Linear``), for comparison.

Other choices (the papers do not fix them): centroids are initialised ``N(0, 1/D')`` (LOUPE's
scale), not by k-means; the static cluster gate of NetVLAGD Xavier-normal as in the released
code; optional ``dropout`` on the normalised descriptor before the hidden layer (default 0: none
of the three papers states a value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vltr.models.layers import ContextGating, MaskedBatchNorm1d, zero_masked

# BatchNorm eps after a layer that reads a unit-norm K * D descriptor: that layer's outputs vary
# by ~1 / (3 K D) across a batch at initialisation (2.5e-6 at VideoLT's K = 64, D = 2048), below
# PyTorch's default eps of 1e-5, which would then shrink the normalised output to ~0.45 instead
# of 1 and leave the branch 2.2x below its peers; 1e-8 only guards the division.
DESCRIPTOR_BN_EPS = 1e-8


class NetVLAD(nn.Module):
    """NetVLAD over frames: MOVE eq. 2-3 (Arandjelovic et al. 2016), VideoLT's K=64, H=1024.

    * input BatchNorm over the real frames (``batch_norm``);
    * eq. 3, soft assignment: ``a_k(x_t) = softmax_k(w_k . x_t + b_k)`` (``self.assign``; with
      ``batch_norm`` the bias is replaced by a BatchNorm of the logits, ``self.assign_bn``),
      multiplied by the frame mask (masked frames get weight 0 for every cluster);
    * eq. 2, residual aggregation: ``V(k) = sum_t a_k(x_t) (x_t - mu_k)``, computed as
      ``sum_t a_k x_t - mu_k sum_t a_k`` (one batched matmul), ``mu`` = ``self.centroids``;
      ``residual=False`` aggregates ``sum_t a_k(x_t) x_t`` (LOUPE's NetVLAGD: no ``mu_k``);
    * ``cluster_gate``: NetVLAGD's static gate, ``V(k) * sigmoid(G_k)`` with a learned
      ``[K, D]`` parameter;
    * NetVLAD's normalisation (Arandjelovic et al. §3): intra-normalisation (L2 of each
      ``V(k)``), then L2 of the flattened ``K * D`` vector;
    * the hidden layer ``Linear(K * D -> hidden_dim)``: MOVE's ``f_phi`` in eq. 4 and VideoLT's
      hidden layer (``output_dim = hidden_dim``); with ``batch_norm`` bias-free and followed by
      BatchNorm and ReLU6, as the reference code;
    * ``context_gating``: Miech et al.'s gate on the hidden output (not in the released NetVLAGD).

    Frame order is irrelevant (VLAD is a sum over frames), so any ``T`` works.
    """

    def __init__(
        self,
        input_dim: int,
        num_clusters: int = 64,
        hidden_dim: int = 1024,
        residual: bool = True,
        batch_norm: bool = True,
        cluster_gate: bool = False,
        context_gating: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_clusters = num_clusters
        self.residual = residual
        self.input_bn = MaskedBatchNorm1d(input_dim) if batch_norm else None
        self.assign = nn.Linear(input_dim, num_clusters, bias=not batch_norm)  # w_k (b_k)
        self.assign_bn = MaskedBatchNorm1d(num_clusters) if batch_norm else None
        if residual:
            self.centroids = nn.Parameter(
                torch.randn(num_clusters, input_dim) / math.sqrt(input_dim)
            )  # mu_k of eq. 2
        else:
            self.register_parameter("centroids", None)
        if cluster_gate:
            self.cluster_gate = nn.Parameter(
                nn.init.xavier_normal_(torch.empty(num_clusters, input_dim))
            )
        else:
            self.register_parameter("cluster_gate", None)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_clusters * input_dim, hidden_dim, bias=not batch_norm)
        self.hidden_bn = (
            MaskedBatchNorm1d(hidden_dim, eps=DESCRIPTOR_BN_EPS) if batch_norm else None
        )
        self.context_gate = ContextGating(hidden_dim) if context_gating else None
        self.descriptor_dim = num_clusters * input_dim
        self.output_dim = hidden_dim

    def _frames(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = zero_masked(x, mask)
        return x if self.input_bn is None else self.input_bn(x, mask)

    def _assignment(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits = self.assign(x)
        if self.assign_bn is not None:
            logits = self.assign_bn(logits, mask)
        a = torch.softmax(logits, dim=-1)
        return a if mask is None else a * mask.unsqueeze(-1).to(a.dtype)

    def assignment(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3: soft assignment ``[B, T, K]``, exactly 0 on masked frames.

        (MOVE's Fig. 2b "degree of adjacency to each cluster".)
        """
        return self._assignment(self._frames(x, mask), mask)

    def descriptor(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 2 + intra-normalisation + global L2: the normalised VLAD vector ``[B, K * D]``."""
        x = self._frames(x, mask)
        a = self._assignment(x, mask)  # [B, T, K]
        vlad = a.transpose(1, 2) @ x  # [B, K, D]: sum_t a_k(x_t) x_t
        if self.centroids is not None:
            vlad = vlad - a.sum(dim=1).unsqueeze(-1) * self.centroids  # - mu_k sum_t a_k(x_t)
        if self.cluster_gate is not None:
            vlad = vlad * torch.sigmoid(self.cluster_gate)
        vlad = F.normalize(vlad, dim=-1)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.fc(self.dropout(self.descriptor(x, mask)))
        if self.hidden_bn is not None:
            out = F.relu6(self.hidden_bn(out))
        return out if self.context_gate is None else self.context_gate(out)


class NeXtVLAD(nn.Module):
    """NeXtVLAD (Lin, Xiao and Fan 2018), the aggregator MEID uses on CharadesLT.

    Defaults: expansion ``lambda = 2``, ``G = 8`` groups, ``K = 64`` clusters, hidden 1024.
    With ``N = input_dim``:

    * expansion: ``x'_t = W_e x_t + b_e`` (``lambda N`` dims), split into ``G`` group
      features ``x'^g_t`` of ``lambda N / G`` dims;
    * group attention: ``alpha_g(x'_t) = sigmoid(w_g . x'_t + b_g)``;
    * per-group soft assignment over ``K`` shared centroids ``c_k`` (``lambda N / G`` dims),
      computed from the whole expanded frame as in the paper:
      ``alpha_gk(x'_t) = softmax_k(w_gk . x'_t + b_gk)`` (with ``batch_norm``: bias-free, the
      logits batch-normalised over the real frames, as Lin et al.'s code);
    * residual aggregation: ``y_jk = sum_t sum_g m_t alpha_g(x'_t) alpha_gk(x'_t)
      (x'^g_tj - c_kj)``, ``m_t`` the frame mask;
    * normalisation: intra-normalisation of each ``y_k``, then a BatchNorm of the flattened
      vector (``batch_norm``, Lin et al.'s code) or its global L2 (``batch_norm=False``);
    * ``Linear(K * lambda N / G -> hidden_dim)`` (``output_dim = hidden_dim``), with
      ``batch_norm`` bias-free and followed by BatchNorm (no activation, as the code); optional
      :class:`ContextGating` on it (``context_gating``; Lin et al.'s full model uses an
      SE-style gate there, off by default because MEID does not say).
    """

    def __init__(
        self,
        input_dim: int,
        num_clusters: int = 64,
        expansion: int = 2,
        groups: int = 8,
        hidden_dim: int = 1024,
        batch_norm: bool = True,
        context_gating: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        expanded = expansion * input_dim
        if expanded % groups:
            raise ValueError(
                f"expansion * input_dim = {expanded} is not divisible by groups = {groups}"
            )
        self.num_clusters = num_clusters
        self.groups = groups
        self.group_dim = expanded // groups
        self.expand = nn.Linear(input_dim, expanded)
        self.group_attention = nn.Linear(expanded, groups)  # w_g, b_g
        self.assign = nn.Linear(expanded, groups * num_clusters, bias=not batch_norm)  # w_gk (b_gk)
        self.assign_bn = MaskedBatchNorm1d(groups * num_clusters) if batch_norm else None
        self.centroids = nn.Parameter(
            torch.randn(num_clusters, self.group_dim) / math.sqrt(self.group_dim)
        )  # c_k
        self.descriptor_dim = num_clusters * self.group_dim
        self.descriptor_bn = (
            MaskedBatchNorm1d(self.descriptor_dim, eps=DESCRIPTOR_BN_EPS) if batch_norm else None
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.descriptor_dim, hidden_dim, bias=not batch_norm)
        self.hidden_bn = MaskedBatchNorm1d(hidden_dim) if batch_norm else None
        self.context_gate = ContextGating(hidden_dim) if context_gating else None
        self.output_dim = hidden_dim

    def weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``m_t alpha_g(x'_t) alpha_gk(x'_t)``: ``[B, T, G, K]``, 0 on masked frames."""
        return self._weights(self.expand(zero_masked(x, mask)), mask)

    def _weights(self, xe: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = xe.shape
        gate = torch.sigmoid(self.group_attention(xe))  # [B, T, G]
        if mask is not None:
            gate = gate * mask.unsqueeze(-1).to(gate.dtype)
        logits = self.assign(xe)
        if self.assign_bn is not None:
            logits = self.assign_bn(logits, mask)
        assign = torch.softmax(logits.view(b, t, self.groups, self.num_clusters), -1)
        return gate.unsqueeze(-1) * assign

    def descriptor(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The normalised NeXtVLAD vector ``[B, K * lambda N / G]``."""
        xe = self.expand(zero_masked(x, mask))  # [B, T, lambda N]
        b, t, _ = xe.shape
        w = self._weights(xe, mask).reshape(b, t * self.groups, self.num_clusters)
        xg = xe.reshape(b, t * self.groups, self.group_dim)  # frames x groups as one axis
        vlad = w.transpose(1, 2) @ xg - w.sum(dim=1).unsqueeze(-1) * self.centroids  # [B,K,D']
        vlad = F.normalize(vlad, dim=-1).flatten(1)
        if self.descriptor_bn is not None:
            return self.descriptor_bn(vlad)
        return F.normalize(vlad, dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.fc(self.dropout(self.descriptor(x, mask)))
        if self.hidden_bn is not None:
            out = self.hidden_bn(out)
        return out if self.context_gate is None else self.context_gate(out)
