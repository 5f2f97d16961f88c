"""MEDC (vltr.methods.medc, vltr.models.medc): per-expert class distributions, region targets,
reparameterisation, deterministic mean-path inference, sorting and region losses, masking,
refusals and an end-to-end run on a tiny store."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from vltr.data.datamodule import VideoBatch
from vltr.methods.medc import (
    MEDCModule,
    expert_class_weights,
    expert_distribution,
    region_loss,
    region_targets,
    reversed_frequencies,
    sample_weights,
    sorting_loss,
    weighted_bce,
)
from vltr.models.aggregators import NonLinearFrameAggregator
from vltr.models.medc import mean_sigmoid_logits
from vltr.strategies.losses import BinaryCrossEntropy, FocalLoss

from conftest import train_tiny

# an exponential profile (ratio 2): class 0 the head, class 4 the tail
COUNTS = [400, 200, 100, 50, 25]
C = len(COUNTS)
D = 8


def make_module(counts: list[int] = COUNTS, **kwargs: object) -> MEDCModule:
    agg = kwargs.pop("aggregator", None) or NonLinearFrameAggregator(D, hidden_dim=16,
                                                                     dropout=0.0)
    loss = kwargs.pop("loss", None) or BinaryCrossEntropy()
    return MEDCModule(agg, num_classes=len(counts), loss=loss,
                      optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
                      class_counts=counts, embed_dim=12, **kwargs)


def one_hot(classes: list[int], c: int = C) -> torch.Tensor:
    y = torch.zeros(len(classes), c)
    y[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return y


def batch_of(classes: list[int], t: int = 10, seed: int = 0) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    return VideoBatch(features=torch.randn(len(classes), t, D, generator=g).half(),
                      targets=one_hot(classes), index=torch.arange(len(classes)))


def natural_batch(counts: list[int], per: int = 25) -> torch.Tensor:
    """Single-label targets with class c repeated n_c / per times: the natural distribution."""
    return one_hot([c for c, n in enumerate(counts) for _ in range(n // per)], len(counts))


def effective_class_mass(expert: str, counts: list[int], **kwargs: str) -> torch.Tensor:
    """Each class's share of the expert's classification loss on a natural batch, measured
    through the loss's gradient: with all logits 0 every video's BCE is equal, so the gradient
    magnitude of a video is its weight."""
    targets = natural_batch(counts)
    logits = torch.zeros_like(targets, requires_grad=True)
    weights = sample_weights(targets, expert_class_weights(expert, counts, **kwargs))
    weighted_bce(logits, targets, weights).backward()
    per_video = logits.grad.abs().sum(dim=1)
    mass = (per_video.unsqueeze(1) * targets).sum(dim=0)
    return (mass / mass.sum()).double()


# -- per-expert class distributions ------------------------------------------------------------


def test_each_expert_weighting_realises_its_distribution() -> None:
    n = torch.tensor(COUNTS, dtype=torch.float64)
    lt = effective_class_mass("long_tailed", COUNTS)
    uni = effective_class_mass("uniform", COUNTS)
    inv = effective_class_mass("inverse", COUNTS)
    assert torch.allclose(lt, n / n.sum())  # ∝ n_c: the natural distribution
    assert torch.allclose(uni, torch.full((C,), 1.0 / C, dtype=torch.float64))  # ∝ 1
    assert torch.allclose(inv, (1 / n) / (1 / n).sum())  # ∝ 1 / n_c
    assert torch.all(inv[1:] > inv[:-1])  # the tail dominates the inverse expert


def test_inverse_expert_uses_reversed_frequencies_for_any_profile() -> None:
    counts = [300, 100, 100, 75, 25]  # not exponential: reversed != reciprocal
    freq = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    rev = reversed_frequencies(freq)
    # largest <-> smallest, tied classes (100, 100) share the middle values' mean
    assert torch.allclose(rev * sum(counts), torch.tensor([25.0, 87.5, 87.5, 100.0, 300.0],
                                                          dtype=torch.float64))
    assert torch.allclose(effective_class_mass("inverse", counts), rev)
    recip = (1 / freq) / (1 / freq).sum()
    assert torch.allclose(effective_class_mass("inverse", counts, inverse_prior="reciprocal"),
                          recip)
    assert not torch.allclose(rev, recip)


def test_class_weights_keep_the_loss_scale_on_natural_data() -> None:
    freq = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    for expert in ("long_tailed", "uniform", "inverse"):
        w = expert_class_weights(expert, COUNTS).double()
        assert torch.isclose((freq * w).sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(expert_class_weights("long_tailed", COUNTS), torch.ones(C))
    # multi-label: the mean of the labels' weights; no label: weight 1
    w = torch.tensor([1.0, 2.0, 4.0])
    targets = torch.tensor([[1.0, 0, 1.0], [0, 1.0, 0], [0, 0, 0]])
    assert torch.allclose(sample_weights(targets, w), torch.tensor([2.5, 2.0, 1.0]))


def test_region_targets_are_ordered() -> None:
    lt = region_targets("long_tailed", COUNTS, low=0.1, high=1.0)
    inv = region_targets("inverse", COUNTS, low=0.1, high=1.0)
    uni = region_targets("uniform", COUNTS, uniform=0.5)
    assert torch.all(lt[:-1] > lt[1:])  # head > tail
    assert lt[0] == pytest.approx(1.0) and lt[-1] == pytest.approx(0.1)
    assert torch.all(inv[:-1] < inv[1:])  # tail > head
    assert inv[-1] == pytest.approx(1.0) and inv[0] == pytest.approx(0.1)
    assert torch.equal(uni, torch.full((C,), 0.5))
    # min-max of the label frequency: linear in n_c
    expected = 0.1 + 0.9 * (torch.tensor(COUNTS) - 25.0) / (400 - 25)
    assert torch.allclose(lt, expected)
    # no head or tail: the middle of (a, b)
    assert torch.allclose(region_targets("long_tailed", [7, 7, 7], 0.0, 1.0), torch.full((3,),
                                                                                      0.5))
    module = make_module()
    assert module.expert_names == ["long_tailed", "uniform", "inverse"]
    assert torch.equal(module.region_gamma, torch.stack([lt, uni, inv]))


def test_classifier_biases_start_at_each_experts_prior() -> None:
    module = make_module()
    for expert, name in zip(module.experts.experts, module.expert_names, strict=True):
        prior = expert_distribution(name, COUNTS).float()
        assert torch.allclose(torch.sigmoid(expert.classifier.bias.detach()), prior, atol=1e-6)
    lt, uni, inv = (e.classifier.bias.detach() for e in module.experts.experts)
    assert torch.all(lt[:-1] > lt[1:]) and torch.all(inv[:-1] < inv[1:])
    assert torch.allclose(uni, torch.full((C,), float(np.log(1 / (C - 1)))))
    torch.manual_seed(0)
    plain = make_module(prior_bias_init=False).experts.experts[0].classifier.bias.detach()
    assert plain.abs().max() < 1.0 / np.sqrt(12)  # PyTorch's default init (fan-in 12)


# -- model: reparameterisation and inference ---------------------------------------------------


def test_gradients_reach_the_variance_through_the_reparameterisation() -> None:
    torch.manual_seed(0)
    module = make_module()
    batch = batch_of([0, 1, 2, 3, 4, 0])
    out = module.expert_outputs(batch.features, sample=True)
    # the classification loss alone (no region loss): sigma matters only through z
    sum(weighted_bce(out.logits[k], batch.targets, torch.ones(6)) for k in range(3)).backward()
    for expert in module.experts.experts:
        for part in (expert.variance.query, expert.variance.key, expert.variance.value):
            assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0
    # without sampling (z = mu) the variance branch gets nothing from the classifier
    module.zero_grad(set_to_none=True)
    out = module.expert_outputs(batch.features, sample=False)
    weighted_bce(out.logits[0], batch.targets, torch.ones(6)).backward()
    assert module.experts.experts[0].variance.value.weight.grad is None


def test_every_parameter_gets_a_gradient_from_the_training_loss() -> None:
    torch.manual_seed(0)
    module = make_module()
    assert not hasattr(module, "classifier")  # the base class's head is removed
    loss = module.training_loss(batch_of([0, 0, 1, 2, 3, 4, 4]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [name for name, p in module.named_parameters()
               if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing  # DDP with find_unused_parameters=False needs this


def test_inference_uses_the_mean_and_is_deterministic() -> None:
    torch.manual_seed(0)
    module = make_module(aggregator=NonLinearFrameAggregator(D, hidden_dim=16, dropout=0.5))
    batch = batch_of([0, 1, 2, 3, 4])
    module.train()
    module.training_loss(batch)  # BatchNorm running statistics away from their init
    module.eval()
    state = torch.get_rng_state()
    with torch.no_grad():
        a = module(batch.features)
        b = module(batch.features)
        experts = module.expert_logits(batch.features)
        out = module.expert_outputs(batch.features)  # sample=False: z = mu
        assert torch.equal(state, torch.get_rng_state())  # nothing random was drawn
        sampled = module.expert_outputs(batch.features, sample=True)
    assert torch.equal(a, b)
    assert experts.shape == (3, 5, C)
    assert torch.equal(experts, out.logits)
    for k, expert in enumerate(module.experts.experts):
        assert torch.allclose(experts[k], expert.classifier(out.mu[k]), atol=1e-6)
    # the reparameterised path differs; inference does not use it
    assert not torch.allclose(sampled.logits, out.logits)
    assert torch.allclose(torch.sigmoid(a), torch.sigmoid(experts).mean(0), atol=1e-6)


def test_mean_of_sigmoids_is_stable() -> None:
    logits = torch.tensor([[[200.0, -200.0, 0.0, 30.0]], [[100.0, -300.0, 0.0, -30.0]]])
    out = mean_sigmoid_logits(logits)
    assert torch.isfinite(out).all()
    assert out[0, 0] > 50 and out[0, 1] < -150  # no saturation to +-inf
    assert out[0, 2] == 0.0 and abs(out[0, 3]) < 1e-6
    # confident scores keep their order (a float32 sigmoid would tie them at 1.0)
    assert mean_sigmoid_logits(torch.tensor([[40.0], [41.0]]), 0) < mean_sigmoid_logits(
        torch.tensor([[42.0], [41.0]]), 0)


def test_padded_frames_have_no_influence() -> None:
    torch.manual_seed(0)
    module = make_module()
    module.eval()
    batch = batch_of([0, 1, 2], t=12)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[0, 7:] = False
    mask[2, 3:] = False
    garbage = batch.features.clone()
    garbage[~mask] = float("nan")
    with torch.no_grad():
        a = module(batch.features, mask)
        b = module(garbage, mask)
        trimmed = module(batch.features[2:, :3])
        out = module.expert_outputs(garbage, mask)
    assert torch.equal(a, b) and torch.isfinite(out.sigma).all()
    assert torch.allclose(a[2:], trimmed, atol=1e-5)
    module.train()
    loss = module.training_loss(VideoBatch(garbage, batch.targets, batch.index, mask))
    assert torch.isfinite(loss)


# -- losses ------------------------------------------------------------------------------------


def test_sorting_loss_is_lower_when_same_class_means_are_closer() -> None:
    targets = one_hot([0, 0, 1, 1])
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    grouped = torch.stack([a, a * 0.9, b, b * 0.9])  # same class together
    mixed = torch.stack([a, b, a * 0.9, b * 0.9])  # same class apart
    assert sorting_loss(grouped, targets) < sorting_loss(mixed, targets)
    # tighter same-class clusters: lower still
    tighter = torch.stack([a * 3, a * 3, b * 3, b * 3])
    assert sorting_loss(tighter, targets) < sorting_loss(grouped, targets)
    assert sorting_loss(grouped, targets, normalize=True, temperature=0.1) < sorting_loss(
        mixed, targets, normalize=True, temperature=0.1)
    # eq. 3 by hand for one pair: -log(e^{s+} / (e^{s+} + sum e^{s-}))
    mu = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 2.0]])
    y = one_hot([0, 0, 1])
    s01, s02, s12 = 0.5, 0.0, 0.0
    pair01 = -np.log(np.exp(s01) / (np.exp(s01) + np.exp(s02)))
    pair10 = -np.log(np.exp(s01) / (np.exp(s01) + np.exp(s12)))
    assert sorting_loss(mu, y).item() == pytest.approx((pair01 + pair10) / 2, rel=1e-6)


def test_sorting_loss_multilabel_positives_and_empty_batches() -> None:
    # videos 0 and 1 share class 1: positives; video 2 shares nothing: a negative
    targets = torch.tensor([[1.0, 1.0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    close = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]])
    far = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [1.0, 0.0]])
    assert sorting_loss(close, targets) < sorting_loss(far, targets)
    # no positive pair: zero, still differentiable (DDP: the means stay in the graph)
    mu = torch.randn(3, 4, requires_grad=True)
    loss = sorting_loss(mu, one_hot([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and mu.grad is not None
    # a pair without negatives costs nothing and gives finite gradients
    mu = torch.randn(2, 4, requires_grad=True)
    loss = sorting_loss(mu * 100, one_hot([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(mu.grad).all()


def test_region_loss_pulls_variance_to_class_targets() -> None:
    gamma = torch.tensor([1.0, 0.25])
    targets = one_hot([0, 1], 2)
    exact = torch.stack([torch.full((4,), 1.0), torch.full((4,), 0.5)])  # sigma^2 = gamma
    assert region_loss(exact, targets, gamma).item() == pytest.approx(0.0, abs=1e-7)
    swapped = exact.flip(0)
    assert region_loss(swapped, targets, gamma).item() == pytest.approx(0.75 ** 2)
    # multi-label: pulled to both targets, minimum at their mean
    both = torch.tensor([[1.0, 1.0]])
    losses = [region_loss(torch.full((1, 3), v ** 0.5), both, gamma).item()
              for v in (0.4, 0.625, 0.9)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


# -- configuration -----------------------------------------------------------------------------


def test_bad_arguments_fail_clearly() -> None:
    class NoFrames(nn.Module):
        output_dim = 8

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return x.mean(1)

    with pytest.raises(ValueError, match="NoFrames"):
        make_module(aggregator=NoFrames())
    with pytest.raises(ValueError, match="strategy=bce"):
        make_module(loss=FocalLoss())
    with pytest.raises(ValueError, match="batch_transform"):
        make_module(batch_transform=object())
    with pytest.raises(ValueError, match="unknown expert"):
        make_module(experts=["long_tailed", "balanced"])
    with pytest.raises(ValueError, match="inverse_prior"):
        make_module(inverse_prior="flipped")
    with pytest.raises(ValueError, match="lambdas"):
        make_module(lambda_mu=-1.0)
    # one expert (Table II's single-expert rows) and the no-attention ablation work
    single = make_module(experts=["inverse"], temporal_attention=False)
    single.training_loss(batch_of([0, 4, 4])).backward()
    assert single.expert_logits(batch_of([0]).features).shape == (1, 1, C)


def test_lambdas_are_normalised() -> None:
    module = make_module(lambda_mu=2.0, lambda_cls=1.0, lambda_sigma=1.0)
    assert (module.lambda_mu, module.lambda_cls, module.lambda_sigma) == (0.5, 0.25, 0.25)
    torch.manual_seed(0)
    batch = batch_of([0, 0, 1, 3])
    torch.manual_seed(1)
    terms = module.loss_terms(batch)
    torch.manual_seed(1)
    total = module.training_loss(batch)
    expected = 0.5 * terms["mu"] + 0.25 * terms["cls"] + 0.25 * terms["sigma"]
    assert torch.allclose(total, expected)


def test_medc_trains_end_to_end(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg, _ = train_tiny(compose_cfg, "method=medc", "trainer.max_epochs=3",
                        "method.embed_dim=32")
    assert cfg.method._target_ == "vltr.methods.medc.MEDCModule"
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["test"]
