"""Multi-label classification losses. Every loss takes logits ``[B, C]`` and (soft) targets
``[B, C]`` and returns a scalar; constructors accept ``class_counts`` (training counts per
class) so re-weighting losses can be swapped in through config without changing the caller.

The image-LT baselines of VideoLT's Table 1 (issue #3): :class:`FocalLoss`, :class:`LDAMDRWLoss`,
:class:`EqualizationLoss`, :class:`ClassBalancedLoss`, each adapted to sigmoid outputs with
multi-hot or soft targets in ``[0, 1]``. All reduce by the mean over the ``B * C`` entries, like
:class:`BinaryCrossEntropy`, and compute in float32. Losses that change during training
(LDAM-DRW) have ``set_epoch(epoch)``, which the method calls at the start of every training
epoch (0-based). Class-dependent tensors are non-persistent buffers: they follow the module to
its device and are rebuilt from ``class_counts`` rather than loaded from checkpoints.

Longer than most modules: the image-LT losses (BCE, focal, LDAM-DRW, EQL, class-balanced) sit
side by side because they share the class-count buffers and the reduction, and a reader compares
them here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BinaryCrossEntropy(nn.Module):
    """Sigmoid BCE averaged over samples and classes (the VideoLT baseline's loss).

    ``class_counts`` is accepted and not used: every strategy's loss is built with the
    training counts (:func:`vltr.training.builders.build_setup`), and BCE needs none."""

    def __init__(self, class_counts: Sequence[int] | None = None) -> None:
        super().__init__()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets)


# -- shared helpers --------------------------------------------------------------------------


def _raw_counts(class_counts: Sequence[int] | None, loss: str) -> torch.Tensor:
    """Training counts as a float64 ``[C]`` tensor (validated, not clamped)."""
    if class_counts is None:
        raise ValueError(f"{loss} needs class_counts (training videos per class)")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"{loss}: class_counts must be a non-empty 1-D sequence")
    if bool((counts < 0).any()):
        raise ValueError(f"{loss}: class_counts must be non-negative")
    return counts


def _clamped_counts(class_counts: Sequence[int] | None, loss: str) -> torch.Tensor:
    """Counts clamped to ``>= 1``: a class with no training video (possible in a small split)
    would make ``1 / n_c``-style terms infinite; counting it as one video gives it the largest
    (rarest) weight or margin instead, which is finite and what the rarest class should get."""
    return _raw_counts(class_counts, loss).clamp(min=1.0)


def _cb_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"class-balanced beta must be in [0, 1), got {beta}")
    beta_t = torch.tensor(beta, dtype=torch.float64)
    weights = (1.0 - beta_t) / (1.0 - beta_t.pow(counts))
    return (weights * counts.numel() / weights.sum()).to(torch.float32)


def class_balanced_weights(class_counts: Sequence[int], beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. 2019 class-balanced weights, ``[C]`` float32, normalised to sum to ``C``.

    ``w_c = (1 - beta) / (1 - beta ** n_c)`` (the inverse effective number of samples), then
    ``w <- w * C / sum(w)`` (as VideoLT's ``ops/losses.py`` ``CBLoss`` and ``LDAM`` do).
    ``n_c`` is clamped to ``>= 1`` so an empty class gets a finite (the largest) weight.
    ``beta = 0`` gives all-ones weights (no re-weighting).
    """
    return _cb_weights(_clamped_counts(class_counts, "class_balanced_weights"), beta)


def _check_targets(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None) -> None:
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"expected logits and targets [B, C] of one shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes, class_counts {num_classes}")


def _focal_modulator(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 - p_t) ** gamma`` with ``p_t = p y + (1 - p)(1 - y)``, ``p = sigmoid(z)``.

    ``1 - p_t = y (1 - p) + (1 - y) p = y sigmoid(-z) + (1 - y) sigmoid(z)`` is evaluated in
    that form (no ``1 - p`` cancellation near saturation). ``gamma = 0`` returns ones.
    """
    if gamma == 0:
        return torch.ones_like(logits)
    one_minus_pt = targets * torch.sigmoid(-logits) + (1.0 - targets) * torch.sigmoid(logits)
    return one_minus_pt.pow(gamma)


# -- focal -----------------------------------------------------------------------------------


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017), FrameStack's loss (VideoLT, Zhang et al. 2021).

    ``gamma = 1`` as FrameStack is trained (the paper names focal loss without its parameters;
    VideoLT's ``scripts/framestack.sh`` passes ``--gamma 1`` and keeps ``--alpha 1``).

    Per sample ``i`` and class ``c``, with ``p = sigmoid(z)``:

        p_t = p y + (1 - p)(1 - y)
        FL  = alpha_t (1 - p_t) ** gamma * BCE(z, y)
        BCE(z, y) = -y log p - (1 - y) log(1 - p)    (``binary_cross_entropy_with_logits``)

    and the loss is the mean over all ``B * C`` entries (the same reduction as
    :class:`BinaryCrossEntropy`), so ``gamma = 0`` with ``alpha = None`` is exactly BCE.

    Choices:

    * Soft targets (mixup / FrameStack give ``y`` in ``(0, 1)``) use the general ``p_t`` above,
      linear in ``y``. VideoLT's released ``FocalLoss`` uses ``p_t = exp(-BCE) = p^y (1-p)^(1-y)``
      instead; the two agree for ``y`` in ``{0, 1}``.
    * ``alpha``: Lin et al.'s alpha-balancing, ``alpha_t = alpha y + (1 - alpha)(1 - y)``, for
      ``alpha`` in the open interval ``(0, 1)``; ``None`` (default) disables it
      (``alpha_t = 1``). FrameStack's ``--alpha 1`` is *not* this alpha: in VideoLT's code it is
      a constant factor on the loss, and 1 means "no alpha term", i.e. ``alpha=None`` here.
      0 and 1 are rejected because in Lin's parametrisation they would drop all positive /
      all negative terms, which is never what a config copying FrameStack's ``alpha=1`` means.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | None = None,
        gamma: float = 1.0,
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 < alpha < 1.0:
            raise ValueError(
                f"focal alpha must be in (0, 1) or None (no alpha-balancing; "
                f"FrameStack's alpha=1), got {alpha}"
            )
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_targets(logits, targets, None)
        logits, targets = logits.float(), targets.float()
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        loss = _focal_modulator(logits, targets, self.gamma) * bce
        if self.alpha is not None:
            loss = (self.alpha * targets + (1.0 - self.alpha) * (1.0 - targets)) * loss
        return loss.mean()


# -- LDAM-DRW --------------------------------------------------------------------------------


class LDAMDRWLoss(nn.Module):
    """LDAM with deferred re-weighting (Cao et al. 2019), adapted to multi-label sigmoid.

    Margins ``m_c = K / n_c ** (1/4)`` with ``K`` such that ``max_c m_c = max_margin``
    (Cao et al.; ``max_m = 0.5`` in their released code and in VideoLT's). Per entry:

        z'_c = z_c - y_c m_c                    (every positive gets its OWN class's margin)
        L    = mean_{i,c}  w_c * BCE(s z'_c, y_c)

    with scale ``s = 30`` (Cao's code, kept by VideoLT) and DRW weights ``w_c = 1`` for epochs
    ``< drw_epoch`` and the class-balanced weights ``(1 - beta) / (1 - beta ** n_c)``
    (``beta = 0.9999``, normalised to sum to ``C``) from ``drw_epoch`` on; ``set_epoch`` switches.

    Choices:

    * Per-class margins. VideoLT's released ``LDAM`` computes ``batch_m = m @ y^T``, i.e. the SUM
      of a sample's positive margins, and subtracts it from every positive logit; that is Cao's
      single-label formula (where the sum has one term) carried over unchanged and wrong for
      multi-label samples: a two-label video pushes both logits by ``m_a + m_b``. We follow the
      per-class margin ``m_c``, which is what LDAM's per-class margin bound asks for.
    * Soft targets subtract ``y_c m_c`` (linear in ``y``: a half-present class gets half its
      margin). VideoLT casts the targets to uint8, which silently drops the margin for any
      ``y < 1``.
    * The scale multiplies the whole logit. Cao et al. use normalised features and weights
      (cosine logits in ``[-1, 1]``); VideoLT keeps ``s = 30`` on an unnormalised linear
      classifier, and so does this loss (the classifier belongs to the method, not the loss).
    * ``drw_epoch = 50`` (0-based; weights switch at the start of epoch 50): VideoLT's
      ``LDAM(step_epoch=50)`` for its 100-epoch runs (``epoch // 50`` indexes ``beta in
      [0, 0.9999]``). Cao et al. switch at 160 of 200 epochs on CIFAR. ``None`` disables DRW
      (plain LDAM).
    * Weights multiply both the positive and the negative term of class ``c`` and the mean is
      over ``B * C`` (BCE's ``weight=`` semantics as in VideoLT), not divided by the weight sum
      as softmax cross-entropy's weighted mean in Cao's code is.
    * ``n_c = 0`` is clamped to 1 (largest margin, largest weight) so nothing is infinite.
    """

    margins: torch.Tensor
    drw_weights: torch.Tensor

    def __init__(
        self,
        class_counts: Sequence[int] | None = None,
        max_margin: float = 0.5,
        scale: float = 30.0,
        drw_epoch: int | None = 50,
        beta: float = 0.9999,
    ) -> None:
        super().__init__()
        if max_margin < 0 or scale <= 0:
            raise ValueError(f"LDAM needs max_margin >= 0 and scale > 0, got {max_margin}, {scale}")
        if drw_epoch is not None and drw_epoch < 0:
            raise ValueError(f"drw_epoch must be >= 0 or None, got {drw_epoch}")
        counts = _clamped_counts(class_counts, "LDAMDRWLoss")
        margins = counts.pow(-0.25)
        margins = margins * (max_margin / margins.max())
        self.register_buffer("margins", margins.to(torch.float32), persistent=False)
        self.register_buffer("drw_weights", _cb_weights(counts, beta), persistent=False)
        self.scale = float(scale)
        self.drw_epoch = drw_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every training epoch (0-based): switches DRW on/off."""
        self.epoch = int(epoch)

    @property
    def reweighting(self) -> bool:
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    @property
    def class_weights(self) -> torch.Tensor:
        """The per-class weights in use now: ones before ``drw_epoch``, CB weights after."""
        return self.drw_weights if self.reweighting else torch.ones_like(self.drw_weights)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_targets(logits, targets, self.margins.numel())
        logits, targets = logits.float(), targets.float()
        shifted = self.scale * (logits - targets * self.margins)
        loss = F.binary_cross_entropy_with_logits(shifted, targets, reduction="none")
        if self.reweighting:
            loss = loss * self.drw_weights
        return loss.mean()


# -- EQL -------------------------------------------------------------------------------------


class EqualizationLoss(nn.Module):
    """Sigmoid equalization loss (Tan et al. 2020) for multi-label video recognition.

    Per sample ``i`` and class ``j``:

        w_ij = 1 - E(r) T_lambda(f_j) (1 - y_ij),   T_lambda(f) = 1 if f < lambda else 0
        L    = mean_{i,j}  w_ij * BCE(z_ij, y_ij)

    i.e. the negative term of a tail class is dropped (its discouraging gradient from other
    classes' positives is ignored), everything else is BCE. Mean over ``B * C`` like BCE
    (the zeroed entries stay in the denominator, as in VideoLT's ``weight=`` implementation).

    Choices:

    * ``E(r) = 1``: EQL's ``E(r)`` excludes background proposals in detection; every video
      here is a labelled (foreground) sample.
    * Frequency ``f_j = n_j / sum_k n_k``: EQL divides by the number of images; only per-class
      counts reach the loss, so the denominator is the number of (video, label) pairs, which
      differs from the number of videos for multi-label data (VideoLT train: 196,798 labels,
      179,334 videos).
    * ``tail_lambda = 5.1e-4``: VideoLT's tail/medium boundary (tail ``n <= 100``) in this
      frequency: ``100 / 196,798 = 5.08e-4 < 5.1e-4 < 101 / 196,798 = 5.13e-4``, so the 340
      VideoLT tail classes are exactly the ``T = 1`` classes. (EQL's own ``lambda = 1.76e-3`` was
      chosen for LVIS categories.) A frequency threshold is dataset-specific, so
      ``tail_max`` gives the count form instead: ``T_j = 1`` iff ``n_j <= tail_max`` (what
      VideoLT's released ``EQL(max_tail_num=100)`` does). Exactly one of the two must be set;
      the strategy config sets ``tail_max`` to the dataset's ``groups.tail_max``.
    * Soft targets: ``BCE = y softplus(-z) + (1 - y) softplus(z)``, and only the negative part
      is scaled: ``L_ij = y softplus(-z) + (1 - T_j beta_ij)(1 - y) softplus(z)``. For ``y`` in
      ``{0, 1}`` this is exactly ``w_ij * BCE``; for mixed targets it keeps the whole positive
      term of a tail class (multiplying the full BCE by ``w`` would also shrink it).
    * ``ignore_prob`` (EQL's softmax-variant random ``beta ~ Bernoulli(gamma)``; default 1 =
      always ignore, the deterministic sigmoid EQL). VideoLT's released EQL draws this ``beta``
      with ``gamma = 1.76e-3`` (EQL's LVIS *lambda* value), i.e. ignores a tail negative with
      probability 0.18 % — close to plain BCE; ``ignore_prob=1.76e-3, tail_max=100``
      reproduces it. Random draws come from torch's generator (seeded by ``seed_everything``).
    """

    tail_mask: torch.Tensor

    def __init__(
        self,
        class_counts: Sequence[int] | None = None,
        tail_lambda: float | None = 5.1e-4,
        tail_max: int | None = None,
        ignore_prob: float = 1.0,
    ) -> None:
        super().__init__()
        if (tail_lambda is None) == (tail_max is None):
            raise ValueError(
                "EqualizationLoss: set exactly one of tail_lambda (frequency "
                "threshold) and tail_max (count threshold)"
            )
        if not 0.0 <= ignore_prob <= 1.0:
            raise ValueError(f"ignore_prob must be in [0, 1], got {ignore_prob}")
        counts = _raw_counts(class_counts, "EqualizationLoss")
        if tail_lambda is not None:
            tail = counts / counts.sum().clamp(min=1.0) < tail_lambda
        else:
            tail = counts <= tail_max
        self.register_buffer("tail_mask", tail.to(torch.float32), persistent=False)
        self.tail_lambda = tail_lambda
        self.tail_max = tail_max
        self.ignore_prob = float(ignore_prob)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_targets(logits, targets, self.tail_mask.numel())
        logits, targets = logits.float(), targets.float()
        ignore = self.tail_mask.expand_as(logits)
        if self.ignore_prob < 1.0:
            ignore = ignore * (torch.rand_like(logits) < self.ignore_prob).float()
        positive = targets * F.softplus(-logits)
        negative = (1.0 - targets) * F.softplus(logits)
        return (positive + (1.0 - ignore) * negative).mean()


# -- class-balanced --------------------------------------------------------------------------


class ClassBalancedLoss(nn.Module):
    """Class-balanced loss (Cui et al. 2019) for multi-label sigmoid outputs.

        w_c = (1 - beta) / (1 - beta ** n_c),  normalised so that sum_c w_c = C
        L   = mean_{i,c}  w_c * base(z_ic, y_ic)

    with ``base`` = ``"bce"`` (sigmoid cross-entropy, Cui's CB-sigmoid) or ``"focal"``
    (``(1 - p_t) ** gamma * BCE`` with the soft-target ``p_t`` of :class:`FocalLoss`,
    Cui's CB-focal, no alpha).

    Choices:

    * ``base = "bce"`` by default: VideoLT's Table 1 "CB Loss" is its ``CBLoss`` class,
      "class-balanced binary cross-entropy" (``binary_cross_entropy_with_logits(weight=w)``),
      no focal term. ``gamma = 1.0`` (used only with ``base="focal"``) matches the project's
      focal loss (FrameStack); Cui et al. tune gamma per dataset.
    * ``beta = 0.9999``: VideoLT's ``CBLoss`` default (Cui et al. tune beta per dataset).
    * Multi-label: the weight of class ``c`` multiplies both terms of that class's binary loss
      for every sample (Cui's single-label sigmoid weights a sample's whole loss by its label's
      weight; per class is the multi-label reading and VideoLT's). Mean over ``B * C``.
    * ``n_c = 0`` is clamped to 1, so an empty class gets the largest finite weight.
    """

    class_weights: torch.Tensor

    def __init__(
        self,
        class_counts: Sequence[int] | None = None,
        beta: float = 0.9999,
        base: str = "bce",
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        if base not in ("bce", "focal"):
            raise ValueError(f"ClassBalancedLoss base must be 'bce' or 'focal', got {base!r}")
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        counts = _clamped_counts(class_counts, "ClassBalancedLoss")
        self.register_buffer("class_weights", _cb_weights(counts, beta), persistent=False)
        self.base = base
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_targets(logits, targets, self.class_weights.numel())
        logits, targets = logits.float(), targets.float()
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if self.base == "focal":
            loss = _focal_modulator(logits, targets, self.gamma) * loss
        return (loss * self.class_weights).mean()
