"""Attention temporal aggregators: MOVE's prototypical self-attention and dual aggregator, and
MEID's frame attention.

``[B, T, D]`` frame features (+ optional ``[B, T]`` bool mask, True = real frame) ->
``[B, output_dim]``. Masking is exact: masked frames are zero-filled before any layer sees
them, they are left out of every temporal mean, and their attention logits are removed before
the softmax (key-padding masking; weights exactly 0). A row with no real frame gets all-zero
attention weights instead of the NaN of a softmax over nothing, so its output is finite.
"""

from __future__ import annotations

import torch
from torch import nn

from vltr.models.aggregators import masked_mean
from vltr.models.layers import zero_masked
from vltr.models.vlad import NetVLAD


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim counting only entries where ``mask`` (broadcastable) is True.

    Masked entries get weight exactly 0; a slice with no True entry gets all-zero weights (not
    NaN), with finite gradients.
    """
    if mask is None:
        return torch.softmax(logits, dim=-1)
    mask = mask.expand_as(logits)
    any_valid = mask.any(dim=-1, keepdim=True)
    logits = logits.masked_fill(~mask, float("-inf"))
    logits = torch.where(any_valid, logits, torch.zeros_like(logits))  # no all -inf rows
    return torch.softmax(logits, dim=-1) * mask.to(logits.dtype)


class PrototypicalSelfAttention(nn.Module):
    """MOVE's Prototypical Self-Attention (PSA, §2.2 and eq. 1): the self-attentive aggregator.

    * prototype ``p = Pool(x)``: the temporal mean over the real frames (``masked_mean``);
    * multi-head attention (eq. 1 per head, ``num_heads = 4`` as in MOVE's appendix) with the
      prototype as the only query and the frames as keys/values:
      ``o = W_o concat_h softmax_t(q_h . k_{h,t} / sqrt(d_h)) v_{h,t}``, ``q = W_q p``,
      ``k_t = W_k x_t``, ``v_t = W_v x_t``; masked frames are removed from the softmax;
    * residual connection to the prototype and a LayerNorm (post-norm, as in Vaswani et al.):
      ``x_hat = LayerNorm(p + o)``.

    Choices where the paper is silent: the scale is ``sqrt(d_h)`` with ``d_h = D / num_heads``
    (eq. 1 writes ``sqrt(d)`` for a single head); no feed-forward block (the paper only
    modifies MSA); the key projection has no bias (it adds ``q . b_k`` to every logit of a
    row, which the softmax ignores, so its gradient is identically zero); no output projection
    to another size: ``output_dim = input_dim`` and :class:`MoveDualAggregator` applies eq. 4's
    ``f_theta``. ``dropout`` acts on the attention weights (default 0: not stated).

    MOVE applies its minority mask ``m_s`` (eq. 8) to this aggregator by multiplying the input;
    passing it as ``mask`` here instead removes those frames from both the mean and the
    attention. The MOVE method decides which one it wants.
    """

    def __init__(self, input_dim: int, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if input_dim % num_heads:
            raise ValueError(f"input_dim = {input_dim} is not divisible by num_heads = {num_heads}")
        self.num_heads = num_heads
        self.head_dim = input_dim // num_heads
        self.q_proj = nn.Linear(input_dim, input_dim)
        self.k_proj = nn.Linear(input_dim, input_dim, bias=False)
        self.v_proj = nn.Linear(input_dim, input_dim)
        self.out_proj = nn.Linear(input_dim, input_dim)
        self.attn_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(input_dim)
        self.output_dim = input_dim

    def _prototype_and_weights(
        self, x: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        proto = masked_mean(x, mask)  # [B, D]: the query's source, Pool(x)
        q = self.q_proj(proto).view(b, self.num_heads, self.head_dim)  # [B, H, d_h]
        # q_h . (W_k x_t)_h = (W_k,h^T q_h) . x_t: one query is brought into frame space
        # instead of projecting all T frames into key space (B D^2 operations, not B T D^2)
        w_k = self.k_proj.weight.view(self.num_heads, self.head_dim, -1)  # [H, d_h, D]
        q_in = torch.einsum("bhe,hed->bhd", q, w_k)  # [B, H, D]
        logits = q_in @ x.transpose(1, 2) / self.head_dim**0.5  # [B, H, T]
        weights = masked_softmax(logits, None if mask is None else mask.unsqueeze(1))
        return proto, weights

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-head attention of the prototype over the frames, ``[B, H, T]`` (MOVE Fig. 2a)."""
        return self._prototype_and_weights(zero_masked(x, mask), mask)[1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = zero_masked(x, mask)
        proto, weights = self._prototype_and_weights(x, mask)
        weights = self.attn_dropout(weights)  # [B, H, T]
        # sum_t w_t (W_v x_t + b_v)_h = W_v,h (sum_t w_t x_t) + b_v,h sum_t w_t: the weighted
        # frame mean first, then one value projection per head (not one per frame)
        pooled = weights @ x  # [B, H, D]
        w_v = self.v_proj.weight.view(self.num_heads, self.head_dim, -1)  # [H, d_h, D]
        heads = torch.einsum("bhd,hed->bhe", pooled, w_v)  # [B, H, d_h]
        if self.v_proj.bias is not None:
            bias = self.v_proj.bias.view(self.num_heads, self.head_dim)
            heads = heads + bias * weights.sum(dim=-1, keepdim=True)
        out = self.out_proj(heads.flatten(1))
        return self.norm(proto + out)


class MoveDualAggregator(nn.Module):
    """MOVE eq. 4: ``z = f_theta(x_hat) (+) f_phi(x_tilde)``, concatenated.

    * ``x_hat``: :class:`PrototypicalSelfAttention` (``num_heads``); ``f_theta`` =
      ``Linear(D -> attentive_dim)``;
    * ``x_tilde``: the ``K * D`` NetVLAD descriptor of eq. 2-3 (``num_clusters``); ``f_phi`` is
      the :class:`NetVLAD`'s own hidden layer to ``codebook_dim``, so the codebook branch is
      exactly a ``NetVLAD(hidden_dim=codebook_dim)``, not a second projection.

    The paper only says the FCs "project into a reduced dimension"; both default to 1024
    (VideoLT's NetVLAD hidden size). ``output_dim = attentive_dim + codebook_dim``.

    The two branches must reach the classifier at comparable scales. ``f_theta`` reads PSA's
    LayerNorm output (unit scale per video), so its output has a standard deviation of ~0.58 at
    initialisation. With ``batch_norm`` (default) the codebook branch is normalised as in the
    released ``NetVLAD_Dynamic_Aggregator`` (input and assignment BatchNorms over the real
    frames, ``f_phi`` bias-free followed by BatchNorm and ReLU6: ~0.58 as well); without it,
    ``f_phi`` reads an L2-normalised ``K * D`` vector and its output is 30x (K=16, D=64) to
    350x (K=64, D=2048) smaller, so the classifier barely sees the codebook branch.
    ``residual`` and ``cluster_gate`` are passed to the NetVLAD branch: the default follows
    eq. 2 (residuals, no gate); ``residual=False, cluster_gate=True`` is the released code's
    NetVLAGD branch.

    :meth:`self_attentive` and :meth:`codebook_attentive` give the two projected parts
    separately so the MOVE method can feed each its own mask or view (eq. 8-11).
    """

    def __init__(
        self,
        input_dim: int,
        num_heads: int = 4,
        num_clusters: int = 64,
        attentive_dim: int = 1024,
        codebook_dim: int = 1024,
        residual: bool = True,
        batch_norm: bool = True,
        cluster_gate: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.psa = PrototypicalSelfAttention(input_dim, num_heads=num_heads, dropout=dropout)
        self.f_theta = nn.Linear(input_dim, attentive_dim)
        self.netvlad = NetVLAD(
            input_dim,
            num_clusters=num_clusters,
            hidden_dim=codebook_dim,
            residual=residual,
            batch_norm=batch_norm,
            cluster_gate=cluster_gate,
            dropout=dropout,
        )
        self.attentive_dim = attentive_dim
        self.codebook_dim = codebook_dim
        self.output_dim = attentive_dim + codebook_dim

    def self_attentive(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``f_theta(PSA(x))``: ``[B, attentive_dim]``."""
        return self.f_theta(self.psa(x, mask))

    def codebook_attentive(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``f_phi(NetVLAD(x))``: ``[B, codebook_dim]``."""
        return self.netvlad(x, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([self.self_attentive(x, mask), self.codebook_attentive(x, mask)], -1)


class FrameAttentionAggregator(nn.Module):
    """MEID's first-expert backbone: frame embedding (eq. 2), frame attention (eq. 3), eq. 4.

    * eq. 2, ``T = FrameEmbedding(X)``: "normalisation, linear layer and relu":
      ``ReLU(Linear(LayerNorm(x_t)))`` to ``embed_dim`` (default ``input_dim``: the paper keeps
      ``D``), then ``Dropout(dropout)``; ``embed=False`` uses the raw frames;
    * eq. 3, ``A = FrameAttention(X)``, "two linear layers" on the raw features ``X`` (not on
      ``T``): ``s_t = w_2 . tanh(W_1 x_t + b_1) (+ b_2)`` with ``attention_dim`` hidden units;
    * eq. 4, ``Y = Linear(T (.) A)``: the classifier lives in the shared head, so this module
      returns the pooled weighted frames.

    The paper gives neither the activation between the two layers (tanh chosen, as in additive
    attention) nor how ``s_t`` becomes a weight nor how frames are pooled; ``normalization``
    selects:

    * ``"sigmoid"`` (default): ``A_t = sigmoid(s_t)`` and the output is the mean over real
      frames of ``A_t T_t``; ``Linear`` applied per frame and averaged (VideoLT's per-frame
      classifier) is the same function, so this is eq. 4 exactly. Chosen because eq. 8,
      ``R = 1 / (A + beta)`` with ``beta`` in (0, 1) (0.5 best), only re-weights frames
      appreciably when ``A`` spans (0, 1), which a softmax over 150-200 frames (~1/T) does not;
    * ``"softmax"``: ``A = softmax_t(s_t)`` over the real frames, output ``sum_t A_t T_t``
      (attention pooling); ``b_2`` is dropped since a softmax ignores it.

    :meth:`attention` returns ``A`` (``[B, T]``, 0 on masked frames) from ``attention_net``,
    the submodule MEID's second expert inherits and freezes; :meth:`pool` applies any frame
    weights (e.g. eq. 8's ``R``) the same way ``A`` is applied.
    """

    def __init__(
        self,
        input_dim: int,
        attention_dim: int = 1024,
        normalization: str = "sigmoid",
        embed: bool = True,
        embed_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if normalization not in ("sigmoid", "softmax"):
            raise ValueError(f"normalization must be 'sigmoid' or 'softmax', got {normalization!r}")
        self.normalization = normalization
        self.input_dim = input_dim
        self.attention_net = nn.Sequential(
            nn.Linear(input_dim, attention_dim),
            nn.Tanh(),
            nn.Linear(attention_dim, 1, bias=normalization == "sigmoid"),
        )
        out_dim = input_dim if embed_dim is None else embed_dim
        if embed:
            self.embedding: nn.Module = nn.Sequential(
                nn.LayerNorm(input_dim),
                nn.Linear(input_dim, out_dim),
                nn.ReLU(),
                nn.Dropout(dropout),
            )
        else:
            self.embedding = nn.Identity()
        self.output_dim = out_dim if embed else input_dim

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3: frame attention weights ``A``, ``[B, T]``, exactly 0 on masked frames."""
        scores = self.attention_net(zero_masked(x, mask)).squeeze(-1)  # [B, T]
        if self.normalization == "softmax":
            return masked_softmax(scores, mask)
        a = torch.sigmoid(scores)
        return a if mask is None else a * mask.to(a.dtype)

    def pool(
        self, frames: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted temporal pooling of ``[B, T, E]`` frames by ``[B, T]`` weights (eq. 4/9).

        Mean over real frames for ``"sigmoid"``, sum for ``"softmax"``; masked frames count 0.
        """
        weighted = frames * weights.unsqueeze(-1)
        if mask is not None:
            weighted = zero_masked(weighted, mask)
        if self.normalization == "softmax":
            return weighted.sum(dim=1)
        return masked_mean(weighted, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = zero_masked(x, mask)
        return self.pool(self.embedding(x), self.attention(x, mask), mask)
