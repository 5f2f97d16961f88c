"""The per-frame projections the attention layers used before, kept as ``bench/methods.py``'s
baseline ("before").

Both layers apply a linear map to every frame and then take an attention-weighted sum over the
frames. Projecting each frame costs ``B T D^2``; vltr now sums first and projects once per
video (``B D^2``), which gives the same numbers up to float rounding. The functions below are
the former order, swapped into a built module by :func:`use_per_frame_projections`.
"""

from __future__ import annotations

from types import MethodType

import torch
import torch.nn.functional as F
from torch import nn

from vltr.models.aggregators import masked_mean
from vltr.models.attention import PrototypicalSelfAttention, masked_softmax
from vltr.models.layers import zero_masked
from vltr.models.medc import TemporalVarianceAttention


def _split_heads(psa: PrototypicalSelfAttention, t: torch.Tensor) -> torch.Tensor:
    b, n, _ = t.shape
    return t.view(b, n, psa.num_heads, psa.head_dim).transpose(1, 2)


def psa_forward_per_frame(
    psa: PrototypicalSelfAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """PSA with keys and values projected for every frame."""
    x = zero_masked(x, mask)
    proto = masked_mean(x, mask)
    q = _split_heads(psa, psa.q_proj(proto).unsqueeze(1))  # [B, H, 1, d_h]
    k = _split_heads(psa, psa.k_proj(x))  # [B, H, T, d_h]
    logits = (q @ k.transpose(-1, -2)).squeeze(2) / psa.head_dim**0.5
    weights = masked_softmax(logits, None if mask is None else mask.unsqueeze(1))
    v = _split_heads(psa, psa.v_proj(x))
    heads = (psa.attn_dropout(weights).unsqueeze(2) @ v).squeeze(2)
    return psa.norm(proto + psa.out_proj(heads.flatten(1)))


def variance_forward_per_frame(
    att: TemporalVarianceAttention,
    h: torch.Tensor,
    mu: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MEDC's eq. 4 with the value map applied to every frame."""
    r = h - mu.unsqueeze(1)
    scores = att.query(r) @ att.key(r).transpose(1, 2) * att.scale
    if mask is not None:
        scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
    alpha_bar = masked_mean(scores.softmax(dim=-1), mask)
    values = att.value(r.abs())
    if mask is not None:
        values = values.masked_fill(~mask.unsqueeze(-1), 0.0)
    return F.softplus(torch.einsum("bt,btd->bd", alpha_bar, values))


def use_per_frame_projections(model: nn.Module) -> int:
    """Swap the former forward into every PSA and eq. 4 layer of ``model``; the count swapped."""
    swapped = 0
    for layer in model.modules():
        if isinstance(layer, PrototypicalSelfAttention):
            layer.forward = MethodType(psa_forward_per_frame, layer)  # type: ignore[method-assign]
            swapped += 1
        elif isinstance(layer, TemporalVarianceAttention):
            layer.forward = MethodType(variance_forward_per_frame, layer)  # type: ignore[method-assign]
            swapped += 1
    return swapped
