"""MEDC: Multi-Experts Distribution Calibration (Hu, Gao and Xu, IEEE TMM), §III-IV.

Architecture (:mod:`vltr.models.medc`): the shared frame encoder, then ``K`` experts (default
three: long-tailed, uniform, inverse-long-tailed), each with its own frame MLP, mean head
(eq. 2), temporal-attention variance (eq. 4), reparameterised embedding ``z = mu + eps sigma``
(eq. 5) and classifier (eq. 6). Inference uses ``z = mu``; :meth:`MEDCModule.forward` returns
``logit(mean_k sigmoid(logits_k))`` (the experts' probabilities averaged, §III-D) so the base
class's metrics work unchanged; :meth:`MEDCModule.expert_logits` gives every expert's own
``[K, B, C]`` logits.

Training loss (eq. 8), every term summed over the experts::

    L = l_mu * sum_k L_mu^k + l_cls * sum_k L_cls^k + l_sigma * sum_k L_sigma^k

with ``(l_mu, l_cls, l_sigma) = (lambda_mu, lambda_cls, lambda_sigma) / their sum`` (the paper:
"lambda is normalized before aggregation, lambda_1 + lambda_2 + lambda_3 = 1").

* ``L_mu`` (eq. 3, the sorting loss) on each expert's means, :func:`sorting_loss`;
* ``L_cls`` (eq. 6) per expert, sigmoid BCE on ``psi_k(z)`` averaged over classes,
  :func:`weighted_bce`;
* ``L_sigma`` (eq. 7, the region loss) pulls ``sigma^2`` to per-class targets ``gamma_k``,
  :func:`region_loss`, :func:`region_targets` (the inverse expert's targets mirror the
  long-tailed expert's).

How each expert sees its class distribution (long-tailed: natural; uniform: 1/C; inverse:
reversed label frequencies), so that *all three* of its losses see it:

* ``distribution="resample"`` (default, the paper's Fig. 2 and §III-D): the DataModule yields
  one batch per expert per step (``dataset.train_streams``: the natural shuffled order, and
  :class:`~vltr.data.samplers.ClassAwareSampler` with ``power=0`` and with ``power=1,
  reverse=True``), combined into ``{expert: VideoBatch}``. The shared encoder runs on each
  batch, and expert ``k``'s means, variances and logits, hence its sorting, region and
  classification losses (and its BatchNorm statistics), come from its own batch. At the start
  of training the streams' class distributions are checked against the experts'.
* ``distribution="reweight"``: one natural batch feeds all experts, and each loss carries
  importance weights from the per-class weights ``w_c = p_c / omega_c``
  (:func:`sample_weights`): the BCE per video, the region loss per (video, class) pair, the
  sorting loss per ordered pair ``(i, p)`` by ``s_i s_p`` and per negative by ``s_n`` (what a
  re-sampled batch would contain, in expectation). Cheaper (one pass), but a tail class
  contributes a positive pair only when two of its videos share a natural batch, which is
  rare: its pairs are few and carry huge weights (a noisy estimate).

Measurements of both: ``docs/methods/medc.md``.

Only the strategy loss ``strategy=bce`` composes with MEDC (each expert's BCE is MEDC's eq. 6;
the strategy's loss object is used for val/test ``loss`` logging only); strategy batch
transforms (mixup) are refused, and a strategy sampler (``strategy=cbs``/``srs``) is refused by
the DataModule next to ``dataset.train_streams``.

The shared ``aggregator``: MEDC's shared backbone is the aggregator's per-frame encoder
(``aggregator.frame_mlp``, output width ``aggregator.output_dim``), i.e. ``aggregator=nonlinear``
(VideoLT's per-frame Linear-ReLU-Dropout); its temporal mean is not used (each expert pools its
own frames). Aggregators without a per-frame encoder are refused. The module has no classifier
on the aggregator's output: each expert's classifier ``psi_k`` is the run's ``head`` on its
embedding (every parameter gets a gradient every step, as DDP's
``find_unused_parameters=False`` needs).

Readings the paper leaves open are listed in ``docs/methods/medc.md``.

Longer than most modules: MEDC's class distributions, region targets and its three losses (eq.
3, 6, 7) are small functions kept next to the module that combines them (eq. 8), so the paper's
equations read in one place; each is tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vltr.data.datamodule import VideoBatch
from vltr.data.longtail import label_distribution, reversed_by_rank
from vltr.data.samplers import ClassAwareSampler
from vltr.methods.base import MethodSetup, VideoRecognitionModule
from vltr.models.heads import init_prior_bias
from vltr.models.medc import MEDCExperts, MEDCOutput, mean_sigmoid_logits
from vltr.strategies.losses import BinaryCrossEntropy

EXPERTS = ("long_tailed", "uniform", "inverse")
INVERSE_PRIORS = ("reversed", "reciprocal")
# how each expert gets its class distribution: its own re-sampled batch, or importance weights
# on one natural batch
DISTRIBUTIONS = ("resample", "reweight")


# -- class distributions, weights and region targets (float64 arithmetic, [C] results) -------


def label_frequencies(class_counts: Sequence[int]) -> torch.Tensor:
    """``omega_c = n_c / sum_c n_c`` (§III-C), float64 ``[C]``; ``n_c`` clamped to ``>= 1``
    (:func:`vltr.data.longtail.label_distribution`)."""
    try:
        return torch.as_tensor(label_distribution(list(class_counts)), dtype=torch.float64)
    except ValueError as e:
        raise ValueError(f"MEDC: {e}") from None


def reversed_frequencies(freq: torch.Tensor) -> torch.Tensor:
    """``resort(omega)`` (§III-C): the frequencies in reversed order of size (ties share the
    mean of their ranks' values; :func:`vltr.data.longtail.reversed_by_rank`). For an
    exponential count profile (``n_c ∝ r^c``) this is exactly ``∝ 1 / n_c``."""
    rev = reversed_by_rank(freq.detach().cpu().double().numpy())
    return torch.as_tensor(rev, dtype=freq.dtype, device=freq.device)


def _check_expert(expert: str, inverse_prior: str) -> None:
    if expert not in EXPERTS:
        raise ValueError(f"MEDC: unknown expert {expert!r}; choose from {EXPERTS}")
    if inverse_prior not in INVERSE_PRIORS:
        raise ValueError(
            f"MEDC: inverse_prior must be one of {INVERSE_PRIORS}, got {inverse_prior!r}"
        )


def expert_distribution(
    expert: str, class_counts: Sequence[int], inverse_prior: str = "reversed"
) -> torch.Tensor:
    """The class distribution expert ``expert`` trains on, float64 ``[C]`` summing to 1.

    ``long_tailed``: ``omega`` (natural); ``uniform``: ``1 / C``; ``inverse``: the reversed
    frequencies ``resort(omega)`` (``inverse_prior="reversed"``, the paper's definition) or
    ``∝ 1 / n_c`` (``"reciprocal"``, the paper's other sentence; the two agree for exponential
    profiles).
    """
    _check_expert(expert, inverse_prior)
    freq = label_frequencies(class_counts)
    if expert == "long_tailed":
        return freq
    if expert == "uniform":
        return torch.full_like(freq, 1.0 / freq.numel())
    if inverse_prior == "reversed":
        return reversed_frequencies(freq)
    inv = 1.0 / freq
    return inv / inv.sum()


def expert_class_weights(
    expert: str, class_counts: Sequence[int], inverse_prior: str = "reversed"
) -> torch.Tensor:
    """``w_c = p_c / omega_c``, float32 ``[C]``: the importance weight of a class-``c`` label
    under the expert's distribution ``p``; ``sum_c omega_c w_c = 1`` (the loss keeps its scale
    on natural data); all ones for the long-tailed expert."""
    p = expert_distribution(expert, class_counts, inverse_prior)
    return (p / label_frequencies(class_counts)).to(torch.float32)


def _min_max(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    if hi == lo:  # all classes equally frequent: neither head nor tail, the middle
        return torch.full_like(x, 0.5)
    return (x - lo) / (hi - lo)


def region_targets(
    expert: str,
    class_counts: Sequence[int],
    low: float = 0.1,
    high: float = 1.0,
    uniform: float = 0.5,
) -> torch.Tensor:
    """Eq. 7's ``gamma_k``, float32 ``[C]``: the target of ``sigma^2`` for each class.

    ``long_tailed``: ``low + (high - low) * minmax(omega)`` (the most frequent class ``high``,
    the rarest ``low``: head regions larger); ``inverse``: its mirror image
    ``low + high - gamma_long_tailed`` (the rarest class ``high``, the most frequent ``low``:
    §III-C's "set the head classes to follow N(0, 0.1), and the tail classes N(0, 1)", the
    long-tailed setting reversed class by class); ``uniform``: ``uniform`` for every class.
    Equal counts everywhere: the middle of ``[low, high]``.

    The mirror is not ``minmax(resort(omega))``: min-max of the reversed frequencies keeps
    their skew (most classes of a long tail have small counts, so their reversed frequencies
    are large but spread), and on a VideoLT-like profile it left half the tail below 0.3
    instead of near ``high``.
    """
    _check_expert(expert, "reversed")
    if expert == "uniform":
        return torch.full((len(list(class_counts)),), float(uniform), dtype=torch.float32)
    long_tailed = low + (high - low) * _min_max(label_frequencies(class_counts))
    gamma = long_tailed if expert == "long_tailed" else (low + high) - long_tailed
    return gamma.to(torch.float32)


# -- losses ------------------------------------------------------------------------------------


def sample_weights(targets: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Per-video weights ``[B]``: the mean of ``w_c`` over the video's labels.

    ``s_i = sum_c y_ic w_c / sum_c y_ic``; a video without a label gets 1. For single-label
    videos this is exactly the class-aware sampler's importance weight; for multi-label videos
    the mean (not the sampler's sum) keeps the long-tailed expert (``w = 1``) the plain,
    unweighted loss and does not count a two-label video twice.
    """
    y = targets.float().clamp(min=0.0)
    n = y.sum(dim=1)
    s = (y @ class_weights.to(y)) / n.clamp_min(torch.finfo(y.dtype).tiny)
    return torch.where(n > 0, s, torch.ones_like(s))


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Eq. 6 per video (sigmoid BCE averaged over the ``C`` classes), times ``weights`` ``[B]``,
    averaged over the batch (divided by ``B``: the expectation of the re-sampled loss)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return (weights.to(bce) * bce.mean(dim=1)).mean()


def sorting_loss(
    mu: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    normalize: bool = False,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 3 over a batch of means ``mu`` ``[B, d]`` with multi-hot ``targets`` ``[B, C]``.

    Two videos are of "the same class" if they share at least one label (positives); videos
    sharing no label are negatives. For every ordered pair ``(i, p)`` of positives::

        l_ip = -log( exp(s_ip) / (exp(s_ip) + sum_{n in M_i} exp(s_in)) ),
        s_ij = mu_i . mu_j / temperature

    (eq. 3 with the minus sign a loss needs; the other positives of ``i`` are in neither sum),
    and the loss is the mean over all such pairs. ``normalize`` uses cosine similarities
    (``mu`` L2-normalised) instead of the paper's dot product. No positive pair in the batch:
    0 (kept in the graph).

    ``weights`` ``[B]`` (importance weights of the videos, :func:`sample_weights`): the loss a
    batch re-sampled with those weights would give, from this batch. An ordered pair ``(i, p)``
    occurs in a re-sampled batch (of the same size) ``s_i s_p`` times as often, a negative
    ``n`` ``s_n / mean(s)`` times as often: each negative's ``exp(s_in)`` is multiplied by
    ``s_n / mean(s)`` (the denominator keeps the batch's size) and the mean over pairs is
    weighted by ``s_i s_p``. Constant weights: the unweighted loss.
    """
    x = mu.float()
    if normalize:
        x = F.normalize(x, dim=1)
    sim = x @ x.T / temperature
    labels = (targets > 0).float()
    shared = (labels @ labels.T) > 0
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    positives = shared & ~eye
    negatives = ~shared & ~eye
    if not bool(positives.any()):
        return sim.sum() * 0.0
    neg = sim
    if weights is not None:
        w = weights.to(sim)
        copies = (w / w.mean()).clamp_min(torch.finfo(sim.dtype).tiny)
        neg = sim + copies.log().unsqueeze(0)
    # finite fill, not -inf: a row without negatives must not give NaN gradients
    neg_lse = neg.masked_fill(~negatives, torch.finfo(sim.dtype).min).logsumexp(dim=1)
    pair = torch.logaddexp(sim, neg_lse.unsqueeze(1)) - sim
    if weights is None:
        return pair[positives].mean()
    pair_w = (w.unsqueeze(1) * w.unsqueeze(0))[positives]
    return (pair_w * pair[positives]).sum() / pair_w.sum()


def region_loss(
    sigma: torch.Tensor,
    targets: torch.Tensor,
    gamma: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 7, ``E (sigma^2 - gamma_c)^2`` ("2-norm distance") over the pairs (video ``i``,
    positive class ``c``) and the ``d`` dimensions, weighted by the target value.

    ``sigma`` ``[B, d]``, ``targets`` ``[B, C]``, ``gamma`` ``[C]``. A multi-label video is
    pulled towards each of its classes' targets (its optimum: their mean). No positive label in
    the batch: 0 (kept in the graph). ``weights`` ``[B]``: importance weights of the videos
    (each pair weighted by its video's), as for :func:`sorting_loss`.
    """
    i, c = targets.nonzero(as_tuple=True)
    var = sigma.float().pow(2)
    if len(i) == 0:
        return var.sum() * 0.0
    w = targets[i, c].float()
    if weights is not None:
        w = w * weights.to(w)[i]
    per_pair = (var[i] - gamma.to(var)[c].unsqueeze(1)).pow(2).mean(dim=1)
    return (w * per_pair).sum() / w.sum()


# -- the LightningModule -----------------------------------------------------------------------


class MEDCModule(VideoRecognitionModule):
    """MEDC on the shared module (see the module docstring and ``docs/methods/medc.md``).

    ``experts``: names from ``("long_tailed", "uniform", "inverse")`` (Table II's single-expert
    rows: one name). ``embed_dim``: ``d``, the experts' embedding width; ``attention_dim``:
    ``d_k`` of eq. 4 (None: ``d``); ``temporal_attention=False``: Table II's "No
    Temporal-Attention". ``lambda_mu``, ``lambda_cls``, ``lambda_sigma``: eq. 8's weights,
    normalised to sum to 1. ``region_low``, ``region_high``: ``(a, b)``, the range of the
    long-tailed / inverse region targets; ``uniform_region``: the uniform expert's constant
    ``c``. ``sort_temperature``, ``sort_normalize``: eq. 3's similarity (paper: dot product,
    1.0, False). ``inverse_prior``: the inverse expert's distribution, ``"reversed"``
    frequencies (paper) or ``"reciprocal"`` (``∝ 1/n_c``). ``prior_bias_init``: each expert's
    classifier bias starts at ``logit(p_c)`` of its class distribution ``p`` (not in the paper;
    False: PyTorch's default init). ``distribution``: ``"resample"`` (one batch per expert from
    ``dataset.train_streams``) or ``"reweight"`` (one natural batch, importance weights on
    every loss); see the module docstring. The other arguments are
    :class:`VideoRecognitionModule`'s; ``loss`` must be :class:`BinaryCrossEntropy` and
    ``batch_transform`` None.
    """

    # each expert trains with its own BCE (eq. 6) on its own class distribution: no other loss,
    # sampler or mixing composes with it
    strategies = ("bce",)

    def build_classifier(self, setup: MethodSetup) -> nn.Module | None:
        return None  # each expert has its own classifier psi_k

    def __init__(
        self,
        setup: MethodSetup,
        experts: Sequence[str] = EXPERTS,
        embed_dim: int = 1024,
        attention_dim: int | None = None,
        temporal_attention: bool = True,
        lambda_mu: float = 1.0,
        lambda_cls: float = 1.0,
        lambda_sigma: float = 1.0,
        region_low: float = 0.1,
        region_high: float = 1.0,
        uniform_region: float = 0.5,
        sort_temperature: float = 1.0,
        sort_normalize: bool = False,
        inverse_prior: str = "reversed",
        prior_bias_init: bool = True,
        distribution: str = "resample",
    ) -> None:
        aggregator, loss, batch_transform = setup.aggregator, setup.loss, setup.batch_transform
        num_classes, class_counts = setup.num_classes, setup.class_counts
        encoder = getattr(aggregator, "frame_mlp", None)
        if not isinstance(encoder, nn.Module):
            raise ValueError(
                f"MEDC uses the aggregator's per-frame encoder (frame_mlp) as its "
                f"shared backbone; {type(aggregator).__name__} has none (use "
                "aggregator=nonlinear)"
            )
        if not isinstance(loss, BinaryCrossEntropy):
            raise ValueError(
                f"MEDC trains each expert with its own re-weighted BCE (eq. 6); "
                f"the strategy loss {type(loss).__name__} cannot be combined with "
                "it (use strategy=bce)"
            )
        if batch_transform is not None:
            raise ValueError(
                f"MEDC: a strategy batch_transform ({type(batch_transform).__name__})"
                " cannot be combined with it (mixed labels have no class region)"
            )
        names = [str(e) for e in experts]
        if not names:
            raise ValueError("MEDC needs at least one expert")
        for name in names:
            _check_expert(name, inverse_prior)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"MEDC: distribution must be one of {DISTRIBUTIONS}, got {distribution!r}"
            )
        lambdas = torch.tensor([lambda_mu, lambda_cls, lambda_sigma], dtype=torch.float64)
        if bool((lambdas < 0).any()) or float(lambdas.sum()) <= 0:
            raise ValueError(
                f"MEDC: lambdas must be >= 0 with a positive sum, got {lambdas.tolist()}"
            )
        if not 0.0 <= region_low <= region_high:
            raise ValueError(
                f"MEDC: need 0 <= region_low <= region_high, got {region_low}, {region_high}"
            )
        if uniform_region < 0:
            raise ValueError(f"MEDC: uniform_region must be >= 0, got {uniform_region}")
        if sort_temperature <= 0:
            raise ValueError(f"MEDC: sort_temperature must be > 0, got {sort_temperature}")
        super().__init__(setup)
        self.expert_names = names
        # each expert's classifier psi_k is the run's head on its d-dim embedding
        self.experts = MEDCExperts(
            aggregator.output_dim,
            len(names),
            embed_dim,
            num_classes,
            attention_dim=attention_dim,
            temporal_attention=temporal_attention,
            classifier=setup.classifier,
        )
        counts = list(class_counts)
        if prior_bias_init:
            # each classifier starts at its training distribution's class prior: BatchNorm'd,
            # zero-mean means cannot shift every logit down together, and Adam moves a bias by
            # at most ~lr per step, so from 0 the priors (logit(1/C) and below) take thousands
            # of steps to reach
            for expert, name in zip(self.experts.experts, names, strict=True):
                init_prior_bias(expert.classifier, expert_distribution(name, counts, inverse_prior))
        lam = (lambdas / lambdas.sum()).tolist()
        self.lambda_mu, self.lambda_cls, self.lambda_sigma = (float(v) for v in lam)
        self.sort_temperature = float(sort_temperature)
        self.sort_normalize = bool(sort_normalize)
        self.inverse_prior = inverse_prior
        self.distribution = distribution
        weights = torch.stack([expert_class_weights(n, counts, inverse_prior) for n in names])
        gamma = torch.stack(
            [region_targets(n, counts, region_low, region_high, uniform_region) for n in names]
        )
        # rebuilt from class_counts, not loaded from checkpoints (as the losses' buffers)
        self.register_buffer("class_weights", weights, persistent=False)  # [K, C]
        self.register_buffer("region_gamma", gamma, persistent=False)  # [K, C]

    def compile_targets(self) -> list[nn.Module]:
        return [self.aggregator.frame_mlp, *self.experts.experts]

    # -- model
    def encode(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The shared per-frame encoder: ``[B, T, D]`` -> ``[B, T, H]`` (float32); padded
        frames are zeroed first so that even NaN/Inf padding cannot leak."""
        x = features.float()
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.aggregator.frame_mlp(x), mask

    def expert_outputs(
        self, features: torch.Tensor, mask: torch.Tensor | None = None, sample: bool = False
    ) -> MEDCOutput:
        """Every expert's ``mu``, ``sigma`` and logits (from ``z = mu + eps sigma`` if
        ``sample``, else from ``mu``), stacked on a leading expert axis."""
        frames, mask = self.encode(features, mask)
        return self.experts(frames, mask, sample=sample)

    def expert_logits(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[K, B, C]``: each expert's logits from its mean ``mu`` (deterministic; the order
        of ``expert_names``), for evaluating the experts separately."""
        frames, mask = self.encode(features, mask)
        return self.experts.mean_logits(frames, mask)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``logit(mean_k sigmoid(expert_logits))``: the experts' probabilities averaged."""
        return mean_sigmoid_logits(self.expert_logits(features, mask))

    # -- training
    def _expert_terms(
        self,
        k: int,
        mu: torch.Tensor,
        sigma: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expert ``k``'s eq. 3, eq. 6 and eq. 7 on its batch (``weights``: importance weights
        of the videos, None for a batch already drawn from the expert's distribution)."""
        ones = torch.ones(len(targets), device=targets.device)
        return (
            sorting_loss(mu, targets, self.sort_temperature, self.sort_normalize, weights),
            weighted_bce(logits, targets, ones if weights is None else weights),
            region_loss(sigma, targets, self.region_gamma[k], weights),
        )

    def loss_terms(self, batch: VideoBatch | Mapping[str, VideoBatch]) -> dict[str, torch.Tensor]:
        """The three terms of eq. 8, each summed over the experts (unweighted).

        ``distribution="resample"``: ``batch`` maps each expert's name to a batch drawn from
        its class distribution (``dataset.train_streams``), and every loss of expert ``k`` runs
        on its own batch. ``"reweight"``: one natural batch; every loss of expert ``k`` is
        importance-weighted to its distribution.
        """
        names = self.expert_names
        if isinstance(batch, Mapping):
            if self.distribution != "resample":
                raise ValueError(
                    "MEDC (method.distribution=reweight) re-weights one natural "
                    "batch, but got one batch per training stream: set "
                    "dataset.train_streams=null"
                )
            missing = [n for n in names if n not in batch]
            if missing:
                raise ValueError(
                    f"MEDC: no training stream for expert(s) {missing}; the batch "
                    f"has {sorted(batch)} (dataset.train_streams)"
                )
            # the shared encoder once per stream (an expert list may name a stream twice)
            encoded = {
                n: self.encode(batch[n].features, batch[n].mask) for n in dict.fromkeys(names)
            }
            parts = []
            for k, name in enumerate(names):
                frames, mask = encoded[name]
                mu, sigma, logits = self.experts.experts[k](frames, mask, sample=True)
                targets = batch[name].targets.to(logits.device).float()
                parts.append(self._expert_terms(k, mu, sigma, logits, targets, None))
        else:
            if self.distribution != "reweight":
                raise ValueError(
                    "MEDC (method.distribution=resample) needs one training batch "
                    "per expert (dataset.train_streams, which method=medc sets); "
                    "got a single batch (method.distribution=reweight re-weights "
                    "one natural batch instead)"
                )
            out = self.expert_outputs(batch.features, batch.mask, sample=True)
            targets = batch.targets.to(out.logits.device).float()
            parts = [
                self._expert_terms(
                    k,
                    out.mu[k],
                    out.sigma[k],
                    out.logits[k],
                    targets,
                    sample_weights(targets, self.class_weights[k]),
                )
                for k in range(len(names))
            ]
        mu_terms, cls_terms, sigma_terms = zip(*parts, strict=True)
        return {
            "mu": torch.stack(mu_terms).sum(),
            "cls": torch.stack(cls_terms).sum(),
            "sigma": torch.stack(sigma_terms).sum(),
        }

    def training_loss(self, batch: VideoBatch | Mapping[str, VideoBatch]) -> torch.Tensor:
        terms = self.loss_terms(batch)
        if self._trainer is not None:
            self.log_dict(
                {f"train/loss_{k}": v.detach() for k, v in terms.items()},
                on_step=False,
                on_epoch=True,
                batch_size=_batch_size(batch),
                sync_dist=True,
            )
        return (
            self.lambda_mu * terms["mu"]
            + self.lambda_cls * terms["cls"]
            + self.lambda_sigma * terms["sigma"]
        )

    def training_step(
        self, batch: VideoBatch | Mapping[str, VideoBatch], batch_idx: int
    ) -> torch.Tensor:
        if not isinstance(batch, Mapping):
            return super().training_step(batch, batch_idx)
        loss = self.training_loss(batch)  # no batch transforms (refused at construction)
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=_batch_size(batch),
            sync_dist=True,
        )
        return loss

    def on_train_start(self) -> None:
        """Refuse, in one line, training streams whose class distributions are not the
        experts' (e.g. ``method.inverse_prior`` changed without the inverse stream's sampler)."""
        if self.distribution != "resample":
            return
        # a CombinedLoader's iterables: {stream: DataLoader}
        iterables = self.trainer.train_dataloader
        if not isinstance(iterables, Mapping):
            return  # a single loader: loss_terms says what is wrong on the first batch
        counts = self.class_counts.cpu().numpy()
        for name in dict.fromkeys(self.expert_names):
            loader = iterables.get(name)
            if loader is None:
                continue  # loss_terms names the missing stream
            drawn = stream_class_distribution(getattr(loader, "sampler", None), counts)
            expected = expert_distribution(name, counts.tolist(), self.inverse_prior).numpy()
            present = counts > 0
            expected = expected[present] / expected[present].sum()
            if not np.allclose(drawn[present], expected, rtol=1e-6, atol=1e-9):
                raise ValueError(
                    f"MEDC: training stream {name!r} does not draw the {name} "
                    f"expert's class distribution (inverse_prior="
                    f"{self.inverse_prior}); check dataset.train_streams.{name}"
                )


def _batch_size(batch: VideoBatch | Mapping[str, VideoBatch]) -> int:
    if isinstance(batch, Mapping):
        return sum(len(b) for b in batch.values())
    return len(batch)


def stream_class_distribution(sampler: Any, class_counts: np.ndarray) -> np.ndarray:
    """The class distribution a training loader's sampler draws, float64 ``[C]``: a
    :class:`ClassAwareSampler`'s class probabilities, else (shuffled or sequential order) the
    label frequencies of the training counts."""
    if isinstance(sampler, ClassAwareSampler):
        return np.asarray(sampler.class_probs, dtype=np.float64)
    counts = np.asarray(class_counts, dtype=np.float64)
    return counts / counts.sum()
