"""Codebook temporal aggregators: NetVLAD (VideoLT, MOVE) and NeXtVLAD (MEID on Charades).

``[B, T, D]`` frame features (+ optional ``[B, T]`` bool mask, True = real frame) ->
``[B, output_dim]``. Masking is exact: masked frames are zero-filled before any layer sees
them (so even inf/NaN padding cannot leak through ``0 * x``) and their assignment weights are
set to exactly 0, so they add nothing to any sum; a row with no real frame aggregates to the
zero descriptor and yields a finite output (the FC bias).

Choices shared by both modules (the papers do not fix them):

* The normalised descriptor goes through one ``Linear(K * D' -> hidden_dim)`` (with bias) and
  no activation, as in VideoLT's "64 clusters, hidden size 1024" NetVLAD model.
* No BatchNorm anywhere. LOUPE / YouTube-8M code puts a BatchNorm on the assignment logits (in
  place of the bias ``b_k``) and after the hidden FC; eq. 3 of MOVE has the bias ``b_k``, and a
  BatchNorm over frames would let padded frames move the batch statistics in training, which
  breaks exact masking. No input LayerNorm either: nothing in the papers asks for one.
* Centroids are initialised ``N(0, 1/D')`` (LOUPE's scale), not from k-means as in
  Arandjelovic et al.; assignment and FC layers use PyTorch's default ``Linear`` init.
* Optional ``dropout`` on the normalised descriptor before the FC (LOUPE-style models and
  NeXtVLAD use one); default 0 because none of the three papers states a value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _zero_masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` with the frames where ``mask`` is False set to 0 (``[B, T, D]``, ``[B, T]``)."""
    return x if mask is None else x.masked_fill(~mask.unsqueeze(-1), 0.0)


class ContextGating(nn.Module):
    """Context gating (Miech et al. 2017, the YouTube-8M "learnable pooling" paper).

    ``y = sigmoid(W x + b) * x``, element-wise, on a video-level vector. Used after the hidden
    FC by the released VideoLT/MOVE NetVLAD (``gating=True``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x)) * x


class NetVLAD(nn.Module):
    """NetVLAD over frames: MOVE eq. 2-3 (Arandjelovic et al. 2016), VideoLT's K=64, H=1024.

    * eq. 3, soft assignment: ``a_k(x_t) = softmax_k(w_k . x_t + b_k)`` (``self.assign``),
      multiplied by the frame mask (masked frames get weight 0 for every cluster);
    * eq. 2, residual aggregation: ``V(k) = sum_t a_k(x_t) (x_t - mu_k)``, computed as
      ``sum_t a_k x_t - mu_k sum_t a_k`` (one batched matmul), ``mu`` = ``self.centroids``;
    * NetVLAD's normalisation (Arandjelovic et al. §3): intra-normalisation (L2 of each
      ``V(k)``), then L2 of the flattened ``K * D`` vector;
    * ``Linear(K * D -> hidden_dim)``: MOVE's ``f_phi`` in eq. 4 and VideoLT's hidden layer
      (``output_dim = hidden_dim``).

    ``residual=False, gating=True`` is the variant behind the published VideoLT / MOVE numbers:
    their released code uses LOUPE's gated "NetVLAGD", which aggregates ``sum_t a_k(x_t) x_t``
    without subtracting centroids (there are no ``mu_k``) and applies :class:`ContextGating` to
    the FC output. With ``residual=False`` no centroid parameter is created. Not verified
    against the released code: whether its NetVLAGD also multiplies the ``[K, D]`` aggregate
    by a learned sigmoid gate (not implemented here).

    Frame order is irrelevant (VLAD is a sum over frames), so any ``T`` works.
    """

    def __init__(
        self,
        input_dim: int,
        num_clusters: int = 64,
        hidden_dim: int = 1024,
        residual: bool = True,
        gating: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_clusters = num_clusters
        self.residual = residual
        self.assign = nn.Linear(input_dim, num_clusters)  # w_k, b_k of eq. 3
        if residual:
            self.centroids = nn.Parameter(torch.randn(num_clusters, input_dim)
                                          / math.sqrt(input_dim))  # mu_k of eq. 2
        else:
            self.register_parameter("centroids", None)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_clusters * input_dim, hidden_dim)
        self.gate = ContextGating(hidden_dim) if gating else None
        self.descriptor_dim = num_clusters * input_dim
        self.output_dim = hidden_dim

    def assignment(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3: soft assignment ``[B, T, K]``, exactly 0 on masked frames.

        (MOVE's Fig. 2b "degree of adjacency to each cluster".)
        """
        a = torch.softmax(self.assign(_zero_masked(x, mask)), dim=-1)
        return a if mask is None else a * mask.unsqueeze(-1).to(a.dtype)

    def descriptor(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 2 + intra-normalisation + global L2: the normalised VLAD vector ``[B, K * D]``."""
        x = _zero_masked(x, mask)
        a = self.assignment(x, mask)  # [B, T, K]
        vlad = a.transpose(1, 2) @ x  # [B, K, D]: sum_t a_k(x_t) x_t
        if self.centroids is not None:
            vlad = vlad - a.sum(dim=1).unsqueeze(-1) * self.centroids  # - mu_k sum_t a_k(x_t)
        vlad = F.normalize(vlad, dim=-1)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.fc(self.dropout(self.descriptor(x, mask)))
        return out if self.gate is None else self.gate(out)


class NeXtVLAD(nn.Module):
    """NeXtVLAD (Lin, Xiao and Fan 2018), the aggregator MEID uses on CharadesLT.

    Defaults: expansion ``lambda = 2``, ``G = 8`` groups, ``K = 64`` clusters, hidden 1024.
    With ``N = input_dim``:

    * expansion: ``x'_t = W_e x_t + b_e`` (``lambda N`` dims), split into ``G`` group
      features ``x'^g_t`` of ``lambda N / G`` dims;
    * group attention: ``alpha_g(x'_t) = sigmoid(w_g . x'_t + b_g)``;
    * per-group soft assignment over ``K`` shared centroids ``c_k`` (``lambda N / G`` dims),
      computed from the whole expanded frame as in the paper:
      ``alpha_gk(x'_t) = softmax_k(w_gk . x'_t + b_gk)``;
    * residual aggregation: ``y_jk = sum_t sum_g m_t alpha_g(x'_t) alpha_gk(x'_t)
      (x'^g_tj - c_kj)``, ``m_t`` the frame mask;
    * normalisation: intra-normalisation of each ``y_k`` then global L2 (as :class:`NetVLAD`).
      Lin et al.'s code follows the intra-normalisation with a BatchNorm instead of the global
      L2; the L2 keeps the output independent of the batch and of train/eval mode;
    * ``Linear(K * lambda N / G -> hidden_dim)`` (``output_dim = hidden_dim``); optional
      :class:`ContextGating` on it (``gating``; Lin et al.'s full model uses an SE-style
      gate there, off by default because MEID does not say).
    """

    def __init__(
        self,
        input_dim: int,
        num_clusters: int = 64,
        expansion: int = 2,
        groups: int = 8,
        hidden_dim: int = 1024,
        gating: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        expanded = expansion * input_dim
        if expanded % groups:
            raise ValueError(f"expansion * input_dim = {expanded} is not divisible by "
                             f"groups = {groups}")
        self.num_clusters = num_clusters
        self.groups = groups
        self.group_dim = expanded // groups
        self.expand = nn.Linear(input_dim, expanded)
        self.group_attention = nn.Linear(expanded, groups)  # w_g, b_g
        self.assign = nn.Linear(expanded, groups * num_clusters)  # w_gk, b_gk
        self.centroids = nn.Parameter(torch.randn(num_clusters, self.group_dim)
                                      / math.sqrt(self.group_dim))  # c_k
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_clusters * self.group_dim, hidden_dim)
        self.gate = ContextGating(hidden_dim) if gating else None
        self.descriptor_dim = num_clusters * self.group_dim
        self.output_dim = hidden_dim

    def weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``m_t alpha_g(x'_t) alpha_gk(x'_t)``: ``[B, T, G, K]``, 0 on masked frames."""
        return self._weights(self.expand(_zero_masked(x, mask)), mask)

    def _weights(self, xe: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = xe.shape
        gate = torch.sigmoid(self.group_attention(xe))  # [B, T, G]
        if mask is not None:
            gate = gate * mask.unsqueeze(-1).to(gate.dtype)
        assign = torch.softmax(self.assign(xe).view(b, t, self.groups, self.num_clusters), -1)
        return gate.unsqueeze(-1) * assign

    def descriptor(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The normalised NeXtVLAD vector ``[B, K * lambda N / G]``."""
        xe = self.expand(_zero_masked(x, mask))  # [B, T, lambda N]
        b, t, _ = xe.shape
        w = self._weights(xe, mask).reshape(b, t * self.groups, self.num_clusters)
        xg = xe.reshape(b, t * self.groups, self.group_dim)  # frames x groups as one axis
        vlad = w.transpose(1, 2) @ xg - w.sum(dim=1).unsqueeze(-1) * self.centroids  # [B,K,D']
        vlad = F.normalize(vlad, dim=-1)
        return F.normalize(vlad.flatten(1), dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.fc(self.dropout(self.descriptor(x, mask)))
        return out if self.gate is None else self.gate(out)
