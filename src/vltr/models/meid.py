"""MEID's building blocks (Li et al., AAAI 2023), as plain ``nn.Module``s and functions.

The first expert's backbone (frame embedding, frame attention, eq. 2-4) is
:class:`~vltr.models.attention.FrameAttentionAggregator`; this module adds what MEID puts
around it:

* :class:`ClassGroupNecks` and :func:`variance_distillation_loss`: the distillation loss,
  eq. 5-7;
* :func:`complementary_weights` (eq. 8), :func:`motion_features` (eq. 10) and
  :class:`ComplementaryMotionExpert`, the second expert (eq. 9-12).

Frames: ``[B, T, D]`` float features and an optional ``[B, T]`` bool mask (True = a real
frame); any ``T`` works (VideoLT 150, Charades 200). Masked frames have no influence. The
choices where the paper is silent are listed in ``docs/methods/meid.md`` and in the
docstrings below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vltr.models.aggregators import masked_mean

VARIANCE_OVER = ("batch", "features")


def frame_embedding(input_dim: int, output_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Eq. 2's ``FrameEmbedding``: "normalisation, linear layer and relu", per frame.

    ``LayerNorm(input_dim) -> Linear(input_dim, output_dim) -> ReLU -> Dropout(dropout)``:
    the same layers as :class:`~vltr.models.attention.FrameAttentionAggregator`'s embedding
    (LayerNorm works per frame, so any ``T`` and any batch size, also 1).
    """
    return nn.Sequential(
        nn.LayerNorm(input_dim), nn.Linear(input_dim, output_dim), nn.ReLU(), nn.Dropout(dropout)
    )


def _zero_masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x.masked_fill(~mask.unsqueeze(-1), 0.0)


# -- distillation (eq. 5-7) --------------------------------------------------------------------


class ClassGroupNecks(nn.Module):
    """Eq. 5-6: ``M_head = W_head Y_head + b_head``, ``M_tail = W_tail Y_tail + b_tail``.

    ``Y_head`` / ``Y_tail`` are the columns of the classification embedding ``Y`` (the logits,
    ``[B, C]``) of the head / tail classes ("split from the whole label space with masking");
    each neck is one linear layer to a common ``neck_dim`` so that the two variances of eq. 7
    can be compared. Medium classes are in neither part.
    """

    head_index: torch.Tensor
    tail_index: torch.Tensor

    def __init__(
        self, head_classes: Sequence[int], tail_classes: Sequence[int], neck_dim: int = 256
    ) -> None:
        super().__init__()
        head = torch.as_tensor(list(head_classes), dtype=torch.long)
        tail = torch.as_tensor(list(tail_classes), dtype=torch.long)
        if head.numel() == 0 or tail.numel() == 0:
            raise ValueError("ClassGroupNecks needs at least one head and one tail class")
        if neck_dim < 1:
            raise ValueError(f"neck_dim must be positive, got {neck_dim}")
        # derived from the training counts: rebuilt, not stored in checkpoints
        self.register_buffer("head_index", head, persistent=False)
        self.register_buffer("tail_index", tail, persistent=False)
        self.head = nn.Linear(head.numel(), neck_dim)
        self.tail = nn.Linear(tail.numel(), neck_dim)

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C]`` -> ``(M_head [B, neck_dim], M_tail [B, neck_dim])``."""
        return (
            self.head(logits.index_select(1, self.head_index)),
            self.tail(logits.index_select(1, self.tail_index)),
        )


def variance_distillation_loss(
    m_head: torch.Tensor, m_tail: torch.Tensor, over: str = "batch"
) -> torch.Tensor:
    """Eq. 7: ``L_d = || Var(M_head) - Var(M_tail) ||_2`` for ``[B, d]`` neck outputs.

    ``over="batch"`` (default): the variance of each neck dimension across the videos of the
    batch (``[d]`` per neck), i.e. the spread of the head / tail embedding distributions, which
    the paper wants to transfer from head to tail ("statistics of the head classes", "variance
    instead of mean as the mean is class-dependent"); the L2 norm is over the ``d`` dimensions.
    ``over="features"``: the variance across the ``d`` neck dimensions of each video
    (``[B]``), L2 norm over the batch. Population variance (no Bessel correction), so a batch
    of one video gives a finite 0 instead of NaN. Computed in float32.
    """
    if over not in VARIANCE_OVER:
        raise ValueError(f"variance_over must be one of {VARIANCE_OVER}, got {over!r}")
    if m_head.shape != m_tail.shape or m_head.ndim != 2:
        raise ValueError(
            f"neck outputs must both be [B, d], got {tuple(m_head.shape)} and {tuple(m_tail.shape)}"
        )
    dim = 0 if over == "batch" else 1
    var_head = m_head.float().var(dim=dim, correction=0)
    var_tail = m_tail.float().var(dim=dim, correction=0)
    return torch.linalg.vector_norm(var_head - var_tail)


# -- second expert (eq. 8-12) ------------------------------------------------------------------


def complementary_weights(
    attention: torch.Tensor, beta: float = 0.5, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 8: ``R = 1 / (A + beta)``, ``[B, T]``; exactly 0 on masked frames.

    ``A >= 0`` (sigmoid or softmax attention), so any ``beta > 0`` avoids the division by zero
    (the paper takes ``beta`` in (0, 1), 0.5 best: Table 7). With sigmoid attention ``R`` lies
    in ``(1 / (1 + beta), 1 / beta)``: high-attention (easy) frames get the smallest weights.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    r = 1.0 / (attention + beta)
    return r if mask is None else r * mask.to(r.dtype)


def motion_features(
    x: torch.Tensor, mask: torch.Tensor | None = None, next_frames: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eq. 10: ``X_M = [x_2 - x_1, ..., x_N - x_{N-1}, mean_n x_n]``: differences of adjacent
    video frames, then the temporal mean (the static appearance).

    ``next_frames`` None: ``x`` ``[B, T, D]`` is the video's whole frame sequence in order
    (evaluation); its ``T - 1`` adjacent differences and the mean, ``T`` rows. With a
    ``[B, T]`` mask a difference is kept only where both of its frames are real, and the mean is
    over the real frames.

    ``next_frames`` ``[B, t, D]``: ``x`` holds sampled frames ``x[i_k]`` (a training clip) and
    ``next_frames`` the stored frames ``x[i_k + 1]`` after them; the rows are
    ``x[i_k + 1] - x[i_k]`` for every sampled frame (valid where the mask is) and the mean of
    the sampled frames, ``t + 1`` rows. Both forms take differences of true adjacent frames of
    the stored sequence; the training rows are a random subset of the evaluation rows. (The
    differences of a clip drawn with replacement and sorted are not: repeated frames give zero
    rows, and neighbours in the clip need not be neighbours in the video.)

    Returns ``(X_M, valid)``: ``valid`` marks the valid rows (``None`` without a mask); invalid
    rows are 0.
    """
    x = _zero_masked(x, mask)
    mean = masked_mean(x, mask).unsqueeze(1)
    if next_frames is not None:
        if next_frames.shape != x.shape:
            raise ValueError(
                f"next_frames {tuple(next_frames.shape)} must have the shape of the "
                f"frames {tuple(x.shape)}"
            )
        diffs = _zero_masked(next_frames.to(x.dtype), mask) - x
        pair_valid = mask
    else:
        diffs = x[:, 1:] - x[:, :-1]
        pair_valid = None if mask is None else mask[:, 1:] & mask[:, :-1]
    x_m = torch.cat([diffs, mean], dim=1)
    if mask is None:
        return x_m, None
    valid = torch.cat([pair_valid, mask.any(dim=1, keepdim=True)], dim=1)
    return _zero_masked(x_m, valid), valid


class ComplementaryMotionExpert(nn.Module):
    """MEID's second expert, eq. 8-12, given the (frozen) first expert's attention ``A``.

    * eq. 8: ``R = 1 / (A + beta)`` (:func:`complementary_weights`);
    * eq. 9: ``X_C = FrameEmbedding(X) (.) R`` with this expert's own frame embedding
      (``embedding``; the paper inherits "only the frame attention module" from expert 1);
    * eq. 10: ``X_M`` (:func:`motion_features`) and its own ``motion_embedding``;
    * eq. 11: ``X_F = Linear(Concat(X_C, FrameEmbedding(X_M)))`` (``fuse``, per frame, the
      concatenation along the feature axis);
    * eq. 12: ``Y_F = Linear(X_F)`` (``classifier``).

    Temporal pooling (the paper does not say where): the mean over frames, as expert 1's
    sigmoid attention pooling. Because ``fuse`` and ``classifier`` are affine, the mean of the
    per-frame ``X_F`` equals ``fuse`` of the concatenated means, which is what is computed: the
    mean of ``R_t T_t`` over the real frames and the mean of the embedded motion rows over
    their valid rows.

    Ablations: ``complementary=False`` pools the frame embeddings without ``R`` (every frame
    weight 1); ``use_motion=False`` drops eq. 10 and the motion half of eq. 11 (``fuse`` is then
    ``Linear(E -> fused)`` on ``X_C`` alone).
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        embed_dim: int | None = None,
        fused_dim: int | None = None,
        beta: float = 0.5,
        dropout: float = 0.0,
        use_motion: bool = True,
        complementary: bool = True,
    ) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        embed_dim = input_dim if embed_dim is None else embed_dim
        fused_dim = embed_dim if fused_dim is None else fused_dim
        self.beta = float(beta)
        self.use_motion = bool(use_motion)
        self.complementary = bool(complementary)
        self.embedding = frame_embedding(input_dim, embed_dim, dropout)
        self.motion_embedding = (
            frame_embedding(input_dim, embed_dim, dropout) if self.use_motion else None
        )
        self.fuse = nn.Linear((2 if self.use_motion else 1) * embed_dim, fused_dim)
        self.classifier = nn.Linear(fused_dim, num_classes)
        self.output_dim = fused_dim

    def features(
        self,
        x: torch.Tensor,
        attention: torch.Tensor,
        mask: torch.Tensor | None = None,
        next_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The temporally pooled fused representation ``X_F``, ``[B, fused_dim]``.

        ``next_frames``: the stored frame after each frame of ``x`` (training clips); None when
        ``x`` is the whole sequence in order (see :func:`motion_features`).
        """
        x = _zero_masked(x, mask)
        if self.complementary:
            r = complementary_weights(attention, self.beta, mask)  # eq. 8
        else:
            r = torch.ones_like(attention) if mask is None else mask.to(attention.dtype)
        x_c = masked_mean(self.embedding(x) * r.unsqueeze(-1), mask)  # eq. 9, pooled
        if self.motion_embedding is None:
            return self.fuse(x_c)
        x_m, motion_mask = motion_features(x, mask, next_frames)  # eq. 10
        m = masked_mean(self.motion_embedding(x_m), motion_mask)
        return self.fuse(torch.cat([x_c, m], dim=-1))  # eq. 11

    def forward(
        self,
        x: torch.Tensor,
        attention: torch.Tensor,
        mask: torch.Tensor | None = None,
        next_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Eq. 12: ``Y_F``, ``[B, num_classes]``."""
        return self.classifier(self.features(x, attention, mask, next_frames))
