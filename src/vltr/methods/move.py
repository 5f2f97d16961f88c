"""MOVE: Minority-Oriented Vicinity Expansion (Moon, Seong and Heo, AAAI 2023), §3 + Algorithm 1.

Training step (Algorithm 1), for a batch ``X`` (``[B, T, D]``, ``T`` = the training clip
length, 60 on VideoLT) with multi-hot labels ``Y``:

1. tail-weighted criterion, eq. 7, from the training counts:
   ``tau_s = (n_s - n_min) / (n_max - n_min)`` (0 for the rarest class, 1 for the most
   frequent); if every class has the same count (``n_max == n_min``) ``tau = 0`` for all;
2. dynamic frame sampler (DFS), eq. 8-9: for each video two independent frame sets ``I`` with
   ``|I| ~ U{max(floor(tau T), sigma), ..., T}`` (discrete, both ends included), drawn afresh
   at every step; ``I`` is a uniformly random subset of that size of the video's frames. Small
   ``tau`` (tail) -> sizes spread over ``[sigma, T]``, very different views; ``tau = 1``
   (most frequent class) -> ``|I| = T``, both views are the whole clip;
3. the two masked views ``U``, ``V`` go through the aggregator (eq. 4, 10): the mask is the
   aggregator's ``mask`` argument, so a frame outside ``I`` contributes nothing anywhere;
4. dynamic extrapolation, eq. 11, on the aggregated representations (the aggregator output
   ``z = f_theta(PSA) (+) f_phi(NetVLAD)``, before the classifier):
   ``z = omega u + (1 - omega) v``, ``omega ~ Beta(alpha, alpha) + 1`` in ``[1, 2]``, per sample;
5. calibrated interpolation, eq. 12, of ``z`` with a shuffled copy of the batch:
   ``z~ = lambda z_i + (1 - lambda) z_j``, ``lambda ~ Beta(alpha, alpha)`` per sample,
   ``y~_s = min((lambda y_i + (1 - lambda) y_j)_s * ((1 - tau_s) + gamma), 1)``;
6. one loss, the strategy's (BCE): ``loss(classifier(z~), y~)``.

Evaluation (val/test/predict) is the base class's: one unmasked view of all frames through
the aggregator and the classifier, nothing random.

Choices where the paper is silent or ambiguous:

* Multi-label videos (VideoLT): eq. 9 is written for one class ``s``. The rarest positive
  class drives the DFS (``tau_i = min_{s in y_i} tau_s``, ``tau_reduction="min"``): a video
  that contains a tail class is treated as a tail video. A video without a positive label
  gets ``tau = 1`` (two full views, no DFS augmentation).
* The mask on the self-attentive aggregator: eq. 10's text says ``m_s`` multiplies PSA's
  input. Multiplying literally would keep the zeroed frames in the prototype mean (shrinking
  it by ``|I| / T``) and in the attention softmax (as zero keys). vltr passes the mask to the
  aggregator instead, which removes those frames from the prototype mean, the attention and
  NetVLAD's sum (eq. 10) alike: "frames outside ``I`` do not contribute", and the released
  code also forms each view's prototype as the mean of the sampled frames only.
* One mask per view shared by both aggregators (Algorithm 1: ``U, V = DFS(X, n)``, then
  ``g(U, V)``, ``h(U, V)``); ``I`` is drawn per video (eq. 9's "disposable index set for the
  s-th class" is not shared by all videos of a class in a batch).
* Any aggregator whose ``forward`` takes ``mask`` works (DFS through the mask, extrapolation
  and interpolation on its output): the paper's MOVE is ``aggregator=move_dual``, which
  ``method=move`` selects; another aggregator gives ablations like Table 4's (b)/(c) rows
  plus MOVE. An aggregator without a ``mask`` argument is refused with a ``ValueError``.
* Padded batches (``batch.mask``): ``I`` is drawn among each video's real frames, ``T`` is
  its number of real frames.

Differences between the released code (github.com/wjun0830/MOVE, ``VideoLT/MOVE.py``,
``models/models.py``, ``ops/Augment.py``) and the paper, and what vltr does:

1. DFS bound for multi-label videos: the code uses ``floor(mean_{s in y_i} max(tau_s T,
   sigma))``. vltr: the rarest positive class (above); ``tau_reduction="mean"`` gives the
   code's rule (single-label videos get the same bound either way).
2. Self-attentive views: the code forms the two views' prototypes (queries) as means over two
   random frame subsets, but keys/values are all frames under ONE key mask shared by both
   views, drawn from a third subset, and that mask DROPS the sampled frames instead of keeping
   them (``masked_fill(mask == 0)`` on the sampled indices): a head-class video (``tau = 1``)
   samples all 60 frames, so every key is dropped and its attention is uniform over all of
   them (a softmax of equal logits); a tail one attends over the frames it did not sample. The
   key mask is also hard-coded to 60 frames.
   vltr: the paper (one keep-mask per view on the whole PSA). No option: a bug.
3. Codebook views: the code zeroes the frames outside ``I`` in ``detach()``-ed copies of
   the batch-normalised input, so the input BatchNorm's affine parameters never get a gradient
   and the zeroed frames still enter the assignment BatchNorm's statistics; its two masks are
   drawn independently of the PSA branch's. vltr: the mask enters NetVLAD's sum (eq. 10) with
   gradients flowing, and NetVLAD's BatchNorms take their statistics over each view's kept
   frames only. No option (not the paper's model).
4. Extrapolation ratio: one ``omega`` per batch in the code, per sample in the paper (eq. 11).
   vltr: per sample; ``per_sample=False`` draws one per batch (both ``omega`` and
   ``lambda``), as the code.
5. Interpolation ratio: one ``lambda ~ Beta(1, 1)`` per batch in the code, per sample with
   ``Beta(alpha, alpha)`` (``alpha = 2``) in the paper. vltr: the paper;
   ``interpolation_alpha=1.0`` with ``per_sample=False`` gives the code's.
6. Imbalanced-MiniKinetics200 script (``MOVE_kinetics.py``): ``target = [label]`` makes the
   DFS loop run once, masking sample 0 only (with a bound averaged over every label in the
   batch); the other samples get identical unmasked NetVLAD views and PSA "prototypes" taken
   from their first two frames (``q[:, :2]``) instead of a mean. Table 3 was produced with
   this. vltr: not reproduced (a bug).
7. Schedule: the released scripts train with Adam lr 1e-4, decayed x0.1 at epochs 30 and 60
   of 100; the paper (appendix §8) with lr 1e-3 decayed x0.1 at epoch 50. vltr: the paper's
   (``schedule=move``: lr 1e-3 and a milestone at half of the epochs; the presets set it).
8. Architecture (the aggregator's and classifier's business, not this module's): the code has
   no ``f_theta`` (the 2048-d PSA output is concatenated as is), a gated NetVLAD with
   BatchNorm and ReLU6 (LOUPE's NetVLAGD), attention/output dropout 0.1, and VideoLT's
   non-linear classifier (FC 2048, ReLU, dropout 0.5, FC) on the 3072-d concatenation.
   vltr: :class:`~vltr.models.attention.MoveDualAggregator` per eq. 4 (with ``f_theta``),
   its codebook branch normalised as the code's (BatchNorms, ReLU6 after ``f_phi``), and the
   code's classifier (``head=nonlinear``, which ``method=move`` selects); the NetVLAGD
   branch is an aggregator option.

Same in both: eq. 7 (the code first divides counts by their sum, which min-max scaling
undoes), ``sigma = 3``, ``gamma = 0.5``, ``omega ~ Beta(2, 2) + 1``, the discrete uniform
size including both ends, the labels of eq. 12 clamped to ``[0, 1]`` (so even an unmixed
positive of the most frequent class has target ``gamma``), one BCE loss on the interpolated
batch (Algorithm 1), unmasked evaluation on all frames.

Longer than most modules: the docstring lists every difference between MOVE's paper and its
released code with the choice made, next to the code it explains.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from vltr.data.datamodule import VideoBatch
from vltr.methods.base import MethodSetup, VideoRecognitionModule

TAU_REDUCTIONS = ("min", "mean")
# DFS as eq. 8-9 / the same size law for every class (tau = 0) / no frame sampling (full views)
FRAME_SAMPLERS = ("dynamic", "uniform", "none")


def tail_weighted_criterion(class_counts: Sequence[int]) -> torch.Tensor:
    """Eq. 7: ``tau_s = (n_s - n_min) / (n_max - n_min)``, ``[C]`` float32 in ``[0, 1]``.

    All classes equally frequent (``n_max == n_min``): ``tau = 0`` for every class (each is as
    rare as the rarest), instead of the formula's 0 / 0.
    """
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError("MOVE: class_counts must be a non-empty 1-D sequence")
    if bool((counts < 0).any()):
        raise ValueError("MOVE: class_counts must be non-negative")
    lo, hi = counts.min(), counts.max()
    if hi == lo:
        return torch.zeros(counts.numel(), dtype=torch.float32)
    return ((counts - lo) / (hi - lo)).to(torch.float32)


def dfs_lower_bounds(
    targets: torch.Tensor,
    tau: torch.Tensor,
    frames: torch.Tensor,
    sigma: int,
    reduction: str = "min",
) -> torch.Tensor:
    """Eq. 9's lower end ``max(floor(tau T), sigma)`` per video, ``[B]`` long, at most ``T``.

    ``targets`` ``[B, C]`` (positive where > 0), ``tau`` ``[C]``, ``frames`` ``[B]`` the number
    of (real) frames ``T`` of each video. ``reduction``: how a multi-label video's classes
    combine: ``"min"`` (the rarest positive class, vltr) or ``"mean"`` (the released code:
    ``floor(mean_s max(tau_s T, sigma))``). No positive label: ``tau = 1`` (bound ``T``).
    """
    if reduction not in TAU_REDUCTIONS:
        raise ValueError(f"MOVE: tau_reduction must be one of {TAU_REDUCTIONS}, got {reduction!r}")
    positive = targets > 0
    has_label = positive.any(dim=1)
    tau = tau.to(torch.float64)  # floor(tau T) without float32 rounding at the boundaries
    t = frames.to(torch.float64)
    if reduction == "min":
        tau_i = torch.where(positive, tau.unsqueeze(0), torch.ones_like(tau)).amin(dim=1)
        lower = torch.floor(tau_i * t).long().clamp_min(sigma)
    else:
        per_class = (tau.unsqueeze(0) * t.unsqueeze(1)).clamp_min(float(sigma))  # [B, C]
        mean = (per_class * positive).sum(dim=1) / positive.sum(dim=1).clamp_min(1)
        lower = torch.floor(mean).long()
    lower = torch.where(has_label, lower, frames.long())
    return torch.minimum(lower, frames.long())


def dynamic_frame_mask(lower: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 8-9: a keep-mask ``m`` ``[B, T]`` (True = frame in ``I``), drawn afresh per call.

    ``|I_i| ~ U{lower_i, ..., T_i}`` (``T_i`` = the number of True entries of ``valid[i]``),
    then ``I_i`` = a uniformly random subset of that size of the video's real frames.
    Randomness from torch's generator on ``valid``'s device (``seed_everything`` seeds it).
    """
    b, t = valid.shape
    real = valid.sum(dim=1)  # T_i
    lower = torch.minimum(lower.to(real.device), real)
    span = (real - lower + 1).to(torch.float32)
    size = lower + torch.floor(torch.rand(b, device=valid.device) * span).long()
    size = torch.minimum(size, real)  # rand < 1 already; guards float rounding
    scores = torch.rand(b, t, device=valid.device).masked_fill(~valid, 2.0)  # pads rank last
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < size.unsqueeze(1)


def dynamic_extrapolation(u: torch.Tensor, v: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Eq. 11: ``omega u + (1 - omega) v`` with ``omega`` ``[B]`` (in ``[1, 2]``)."""
    w = omega.to(u.dtype).unsqueeze(1)
    return w * u + (1 - w) * v


def calibrated_interpolation(
    z: torch.Tensor,
    targets: torch.Tensor,
    lam: torch.Tensor,
    perm: torch.Tensor,
    label_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 12: mix ``z`` with ``z[perm]`` by ``lam`` ``[B]``; labels mixed alike, multiplied
    by ``label_weight = (1 - tau) + gamma`` ``[C]`` and clamped to ``[0, 1]``."""
    lz = lam.to(z.dtype).unsqueeze(1)
    ly = lam.to(targets.dtype).unsqueeze(1)
    mixed = lz * z + (1 - lz) * z[perm]
    labels = (ly * targets + (1 - ly) * targets[perm]) * label_weight.to(targets.dtype)
    return mixed, labels.clamp(0.0, 1.0)


class MoveModule(VideoRecognitionModule):
    """MOVE on top of the shared module (see the module docstring for the equations).

    ``alpha``: Beta(alpha, alpha) for ``omega - 1`` (eq. 11) and, unless
    ``interpolation_alpha`` is given, for ``lambda`` (eq. 12); ``gamma``: the smoothing bias of
    eq. 12; ``sigma``: the least ``|I|`` of eq. 9. ``per_sample``: one ``omega`` and one
    ``lambda`` per sample (paper) or per batch (released code). ``tau_reduction``: ``"min"``
    (rarest positive class drives a multi-label video's DFS) or ``"mean"`` (released code).
    The other arguments are :class:`VideoRecognitionModule`'s; ``batch_transform`` must be
    None (MOVE does its own interpolation).

    Ablation switches (MOVE's Table 4; all on = the paper's method): ``frame_sampler``
    (``"dynamic"``: eq. 8-9; ``"uniform"``: every video's view sizes drawn as for the rarest
    class, no tail-weighted criterion; ``"none"``: both views are the whole clip),
    ``extrapolation`` (eq. 11; off: one view ``z = u``), ``interpolation`` (eq. 12; off: no
    mixing), ``calibration`` (eq. 12's label weights ``(1 - tau) + gamma``; off: plain mixup
    labels). Table 4's (e) "Ex." is ``interpolation=false``; (f) "In." is
    ``frame_sampler=none extrapolation=false``.
    """

    # any loss and sampler; not mixup (MOVE does its own interpolation)
    strategies = ("bce", "focal", "ldam_drw", "eql", "cb_loss", "cbs", "srs")

    def __init__(
        self,
        setup: MethodSetup,
        alpha: float = 2.0,
        gamma: float = 0.5,
        sigma: int = 3,
        interpolation_alpha: float | None = None,
        per_sample: bool = True,
        tau_reduction: str = "min",
        frame_sampler: str = "dynamic",
        extrapolation: bool = True,
        interpolation: bool = True,
        calibration: bool = True,
    ) -> None:
        aggregator = setup.aggregator
        name = type(aggregator).__name__
        forward = getattr(aggregator, "forward", None)
        if forward is None or "mask" not in inspect.signature(forward).parameters:
            raise ValueError(
                f"MOVE needs an aggregator that takes a frame mask "
                f"(forward(x, mask)) for its dynamic frame sampler; {name} does "
                "not (use aggregator=move_dual, the paper's)"
            )
        if setup.batch_transform is not None:
            raise ValueError(
                "MOVE does its own interpolation (eq. 12); a strategy "
                f"batch_transform ({type(setup.batch_transform).__name__}) cannot "
                "be combined with it"
            )
        interp = alpha if interpolation_alpha is None else interpolation_alpha
        if alpha <= 0 or interp <= 0:
            raise ValueError(
                f"MOVE: alpha and interpolation_alpha must be positive, got "
                f"{alpha} and {interpolation_alpha}"
            )
        if gamma < 0:
            raise ValueError(f"MOVE: gamma must be >= 0, got {gamma}")
        if int(sigma) != sigma or sigma < 1:
            raise ValueError(f"MOVE: sigma must be a positive integer, got {sigma}")
        if tau_reduction not in TAU_REDUCTIONS:
            raise ValueError(
                f"MOVE: tau_reduction must be one of {TAU_REDUCTIONS}, got {tau_reduction!r}"
            )
        if frame_sampler not in FRAME_SAMPLERS:
            raise ValueError(
                f"MOVE: frame_sampler must be one of {FRAME_SAMPLERS}, got {frame_sampler!r}"
            )
        super().__init__(setup)
        self.frame_sampler = frame_sampler
        self.extrapolation = bool(extrapolation)
        self.interpolation = bool(interpolation)
        self.calibration = bool(calibration)
        self.alpha = float(alpha)
        self.interpolation_alpha = float(interp)
        self.gamma = float(gamma)
        self.sigma = int(sigma)
        self.per_sample = bool(per_sample)
        self.tau_reduction = tau_reduction
        tau = tail_weighted_criterion(setup.class_counts)
        # rebuilt from class_counts, not loaded from checkpoints (as the losses' buffers)
        self.register_buffer("tau", tau, persistent=False)
        self.register_buffer("label_weight", (1.0 - tau) + self.gamma, persistent=False)
        self._omega_beta = torch.distributions.Beta(
            torch.tensor(self.alpha), torch.tensor(self.alpha)
        )
        self._lambda_beta = torch.distributions.Beta(
            torch.tensor(self.interpolation_alpha), torch.tensor(self.interpolation_alpha)
        )

    # -- random draws (torch's generator; seed_everything makes them reproducible)
    def _draw(self, beta: torch.distributions.Beta, n: int) -> torch.Tensor:
        value = beta.sample((n if self.per_sample else 1,)).to(self.tau.device)
        return value.expand(n)

    def sample_omega(self, n: int) -> torch.Tensor:
        """Eq. 11's extrapolation ratios ``omega ~ Beta(alpha, alpha) + 1``, ``[n]``."""
        return self._draw(self._omega_beta, n) + 1.0

    def sample_lambda(self, n: int) -> torch.Tensor:
        """Eq. 12's interpolation ratios ``lambda ~ Beta(alpha, alpha)``, ``[n]``."""
        return self._draw(self._lambda_beta, n)

    def view_masks(self, batch: VideoBatch, views: int = 2) -> list[torch.Tensor]:
        """DFS (eq. 8-9): ``views`` independent keep-masks ``[B, T]`` (the views ``u``, ``v``).

        ``frame_sampler="uniform"`` draws every video's size as a class of ``tau = 0`` would
        (``U{sigma, ..., T}``); ``"none"`` keeps every real frame.
        """
        b, t = batch.features.shape[:2]
        device = batch.features.device
        valid = (
            batch.mask.to(device=device, dtype=torch.bool)
            if batch.mask is not None
            else torch.ones(b, t, dtype=torch.bool, device=device)
        )
        if self.frame_sampler == "none":
            return [valid] * views
        tau = self.tau if self.frame_sampler == "dynamic" else torch.zeros_like(self.tau)
        lower = dfs_lower_bounds(
            batch.targets.to(device), tau, valid.sum(dim=1), self.sigma, self.tau_reduction
        )
        masks = dynamic_frame_mask(lower.repeat(views), valid.repeat(views, 1))
        return list(masks.split(b))

    def views(self, batch: VideoBatch, views: int = 2) -> list[torch.Tensor]:
        """The aggregated representations (``u``, ``v``) of ``views`` DFS views (one aggregator
        pass over ``views * B`` videos), ``[B, output_dim]`` each."""
        masks = self.view_masks(batch, views)
        x = batch.features.float()
        emb = self.aggregator(torch.cat([x] * views), torch.cat(masks))
        return list(emb.split(len(batch)))

    def training_loss(self, batch: VideoBatch) -> torch.Tensor:
        n = len(batch)
        targets = batch.targets
        if self.extrapolation:
            u, v = self.views(batch, 2)
            z = dynamic_extrapolation(u, v, self.sample_omega(n))  # eq. 11
        else:
            (z,) = self.views(batch, 1)
        if self.interpolation:
            perm = torch.randperm(n, device=z.device)
            weight = self.label_weight if self.calibration else torch.ones_like(self.tau)
            z, targets = calibrated_interpolation(
                z, targets.to(z.device), self.sample_lambda(n), perm, weight
            )  # eq. 12
        return self.loss_fn(self.classifier(z), targets)
