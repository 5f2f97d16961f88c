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
from vltr.methods.base import MethodSetup
from vltr.methods.medc import (
    MEDCModule,
    expert_class_weights,
    expert_distribution,
    region_loss,
    region_targets,
    reversed_frequencies,
    sample_weights,
    sorting_loss,
    stream_class_distribution,
    weighted_bce,
)
from vltr.models.aggregators import NonLinearFrameAggregator
from vltr.models.medc import TemporalVarianceAttention, mean_sigmoid_logits
from vltr.strategies.losses import BinaryCrossEntropy, FocalLoss

from conftest import TINY_OVERRIDES, train_tiny

# an exponential profile (ratio 2): class 0 the head, class 4 the tail
COUNTS = [400, 200, 100, 50, 25]
C = len(COUNTS)
D = 8


def make_module(counts: list[int] = COUNTS, **kwargs: object) -> MEDCModule:
    """A small MEDC module; ``distribution="reweight"`` unless given (one natural batch)."""
    agg = kwargs.pop("aggregator", None) or NonLinearFrameAggregator(D, hidden_dim=16, dropout=0.0)
    loss = kwargs.pop("loss", None) or BinaryCrossEntropy()
    transform = kwargs.pop("batch_transform", None)
    kwargs.setdefault("distribution", "reweight")
    setup = MethodSetup(
        aggregator=agg,
        loss=loss,
        class_counts=counts,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        batch_transform=transform,
    )
    return MEDCModule(setup, embed_dim=12, **kwargs)


def one_hot(classes: list[int], c: int = C) -> torch.Tensor:
    y = torch.zeros(len(classes), c)
    y[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return y


def batch_of(classes: list[int], t: int = 10, seed: int = 0) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    return VideoBatch(
        features=torch.randn(len(classes), t, D, generator=g).half(),
        targets=one_hot(classes),
        index=torch.arange(len(classes)),
    )


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
    assert torch.allclose(
        rev * sum(counts), torch.tensor([25.0, 87.5, 87.5, 100.0, 300.0], dtype=torch.float64)
    )
    assert torch.allclose(effective_class_mass("inverse", counts), rev)
    recip = (1 / freq) / (1 / freq).sum()
    assert torch.allclose(
        effective_class_mass("inverse", counts, inverse_prior="reciprocal"), recip
    )
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
    assert torch.allclose(lt + inv, torch.full((C,), 1.1))  # the mirror image, class by class
    assert torch.equal(uni, torch.full((C,), 0.5))
    # min-max of the label frequency: linear in n_c
    expected = 0.1 + 0.9 * (torch.tensor(COUNTS) - 25.0) / (400 - 25)
    assert torch.allclose(lt, expected)
    # no head or tail: the middle of (a, b)
    assert torch.allclose(region_targets("long_tailed", [7, 7, 7], 0.0, 1.0), torch.full((3,), 0.5))
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
    assert module.classifier is None  # each expert carries its own head
    loss = module.training_loss(batch_of([0, 0, 1, 2, 3, 4, 4]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [
        name for name, p in module.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
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
        torch.tensor([[42.0], [41.0]]), 0
    )


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


def test_variance_attention_is_eq_4_frame_by_frame() -> None:
    """Eq. 4 written out per video over its real frames: ``sigma = softplus(1/T sum_t sum_l
    alpha_tl f_v(|h_l - mu|))``, ``alpha`` the softmax over the real key frames."""
    torch.manual_seed(0)
    b, t, d, dk = 3, 6, 5, 4
    att = TemporalVarianceAttention(d, dk).double()
    h, mu = torch.randn(b, t, d, dtype=torch.float64), torch.randn(b, d, dtype=torch.float64)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    expected = []
    for i in range(b):
        r = h[i][mask[i]] - mu[i]  # [T_i, d]
        alpha = torch.softmax(att.query(r) @ att.key(r).T / dk**0.5, dim=1)  # [T_i, T_i]
        per_query = [
            sum(alpha[q, k] * att.value(r[k].abs()) for k in range(len(r))) for q in range(len(r))
        ]
        expected.append(torch.nn.functional.softplus(torch.stack(per_query).mean(0)))
    torch.testing.assert_close(att(h, mu, mask), torch.stack(expected))
    torch.testing.assert_close(att(h[:1], mu[:1]), expected[0].unsqueeze(0))


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
        mixed, targets, normalize=True, temperature=0.1
    )
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
    assert region_loss(swapped, targets, gamma).item() == pytest.approx(0.75**2)
    # multi-label: pulled to both targets, minimum at their mean
    both = torch.tensor([[1.0, 1.0]])
    losses = [
        region_loss(torch.full((1, 3), v**0.5), both, gamma).item() for v in (0.4, 0.625, 0.9)
    ]
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


@pytest.mark.parametrize("distribution", ["resample", "reweight"])
def test_medc_trains_end_to_end(compose_cfg: Callable[..., DictConfig], distribution: str) -> None:
    extra = ["dataset.train_streams=null"] if distribution == "reweight" else []
    cfg, _ = train_tiny(
        compose_cfg,
        "method=medc",
        "trainer.max_epochs=2",
        "method.embed_dim=32",
        f"method.distribution={distribution}",
        *extra,
    )
    assert cfg.method._target_ == "vltr.methods.medc.MEDCModule"
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["test"]


def test_inverse_region_targets_mirror_the_long_tailed_ones() -> None:
    # VideoLT's group sizes (47 head classes n > 500 up to 1,912 videos, 617 medium, 340 tail
    # n <= 100 down to 44): min-max of the reversed frequencies left ~70 % of the tail < 0.3
    counts = (
        np.concatenate(
            [np.geomspace(1912, 501, 47), np.geomspace(500, 101, 617), np.geomspace(100, 44, 340)]
        )
        .round()
        .astype(int)
        .tolist()
    )
    tail = torch.tensor(counts) <= 100
    lt = region_targets("long_tailed", counts, 0.1, 1.0)
    inv = region_targets("inverse", counts, 0.1, 1.0)
    assert torch.allclose(lt + inv, torch.full_like(lt, 1.1))
    assert float(inv[tail].min()) > 0.95 and float(lt[tail].max()) < 0.15
    for a, b in ((0.0, 1.0), (0.2, 0.6)):
        assert torch.allclose(
            region_targets("inverse", counts, a, b),
            a + b - region_targets("long_tailed", counts, a, b),
        )


# -- every loss of an expert sees its distribution ---------------------------------------------


def test_weighted_pairwise_losses_are_the_resampled_ones() -> None:
    torch.manual_seed(0)
    mu = torch.randn(5, 3)
    # videos 0, 1: class 0; 2, 3: class 1; 4: no label (a negative of everyone)
    targets = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0], [0, 0]])
    plain = sorting_loss(mu, targets)
    assert torch.allclose(sorting_loss(mu, targets, weights=torch.full((5,), 3.0)), plain)
    # ordered pairs weighted by s_i s_p: class 0's pairs 9x class 1's; negatives by s_n/mean(s)
    w = torch.tensor([3.0, 3.0, 1.0, 1.0, 1.0])
    sim = mu @ mu.T
    neg = {0: [2, 3, 4], 1: [2, 3, 4], 2: [0, 1, 4], 3: [0, 1, 4]}

    def pair(i: int, p: int) -> torch.Tensor:
        den = sim[i, p].exp() + sum(w[n] / 1.8 * sim[i, n].exp() for n in neg[i])
        return -(sim[i, p].exp() / den).log()

    expected = (9 * (pair(0, 1) + pair(1, 0)) + pair(2, 3) + pair(3, 2)) / 20
    assert torch.allclose(sorting_loss(mu, targets, weights=w), expected, atol=1e-6)
    # region loss: each (video, class) pair weighted by its video
    gamma = torch.tensor([1.0, 0.25])
    sigma = torch.rand(5, 4)
    per_video = (sigma.pow(2) - gamma[targets.argmax(1)].unsqueeze(1)).pow(2).mean(1)[:4]
    assert torch.allclose(
        region_loss(sigma, targets, gamma, weights=w), (w[:4] * per_video).sum() / w[:4].sum()
    )
    assert torch.allclose(
        region_loss(sigma, targets, gamma, weights=torch.ones(5)),
        region_loss(sigma, targets, gamma),
    )


def test_reweighting_reaches_every_loss_of_an_expert() -> None:
    # one natural batch: the uniform and inverse experts' sorting and region losses are
    # weighted, not only their BCE (changing a tail video's weight changes all three)
    module = make_module()
    batch = batch_of([0, 0, 0, 0, 1, 1, 4, 4], seed=1)
    out = module.expert_outputs(batch.features, sample=False)
    targets = batch.targets
    for k in (1, 2):
        w = sample_weights(targets, module.class_weights[k])
        assert w[-1] > w[0]
        weighted = module._expert_terms(k, out.mu[k], out.sigma[k], out.logits[k], targets, w)
        natural = module._expert_terms(k, out.mu[k], out.sigma[k], out.logits[k], targets, None)
        assert all(not torch.allclose(a, b) for a, b in zip(weighted, natural, strict=True))


def test_resampled_experts_each_train_on_their_own_batch() -> None:
    torch.manual_seed(0)
    module = make_module(distribution="resample")
    streams = {
        "long_tailed": batch_of([0, 0, 0, 1, 1, 2], seed=1),
        "uniform": batch_of([0, 1, 2, 3, 4, 4], seed=2),
        "inverse": batch_of([4, 4, 4, 3, 3, 2], seed=3),
    }

    def grads(batches: dict[str, VideoBatch]) -> dict[str, torch.Tensor]:
        module.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        module.training_loss(batches).backward()
        return {n: p.grad.clone() for n, p in module.named_parameters()}

    base = grads(streams)
    assert all(g.abs().sum() > 0 for g in base.values())  # every parameter used (DDP)
    # another inverse batch changes the inverse expert (index 2) and the shared encoder only
    changed = grads({**streams, "inverse": batch_of([4, 3, 3, 2, 4, 4], seed=9)})
    own = ("experts.experts.2.", "aggregator.")
    for name in base:
        if not name.startswith(own):
            assert torch.equal(base[name], changed[name]), name
    for name in (
        "experts.experts.2.classifier.weight",
        "experts.experts.2.mean_fc.weight",
        "experts.experts.2.variance.value.weight",
        "aggregator.frame_mlp.0.weight",
    ):
        assert not torch.allclose(base[name], changed[name]), name
    # the wrong kind of batch fails in one line
    with pytest.raises(ValueError, match="one training batch per expert"):
        module.training_loss(streams["uniform"])
    with pytest.raises(ValueError, match="no training stream for expert"):
        module.training_loss({"uniform": streams["uniform"]})
    with pytest.raises(ValueError, match="train_streams=null"):
        make_module().training_loss(streams)


def test_streams_draw_each_experts_distribution(compose_cfg: Callable[..., DictConfig]) -> None:
    from vltr.training.builders import build_datamodule

    cfg = compose_cfg(*TINY_OVERRIDES, "method=medc")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    counts = dm.info().class_counts
    loader = dm.train_dataloader()
    assert list(loader.iterables) == ["long_tailed", "uniform", "inverse"]
    for name, dl in loader.iterables.items():
        expected = expert_distribution(name, counts.tolist()).numpy()
        np.testing.assert_allclose(stream_class_distribution(dl.sampler, counts), expected)
    iter(loader)  # a CombinedLoader knows its length once iterated
    pos_pairs = {name: np.zeros(len(counts)) for name in loader.iterables}
    for batch, _, _ in loader:
        assert set(batch) == set(pos_pairs)
        for name, b in batch.items():
            y = b.targets.numpy()
            shared = (y @ y.T > 0) & ~np.eye(len(y), dtype=bool)
            # eq. 3's positive pairs by the anchor's first class
            pos_pairs[name] += np.bincount(
                y.argmax(1), weights=shared.sum(1), minlength=len(counts)
            )
    tail = counts <= cfg.dataset.groups.tail_max
    share = {n: v[tail].sum() / v.sum() for n, v in pos_pairs.items()}
    # the tail's share of the sorting loss's positive pairs: rare on natural batches
    assert share["long_tailed"] < 0.1 < share["uniform"] < share["inverse"]
    # one expert: one stream
    one = build_datamodule(compose_cfg(*TINY_OVERRIDES, "method=medc", "method.experts=[inverse]"))
    one.setup("fit")
    assert list(one.train_dataloader().iterables) == ["inverse"]


def test_streams_that_disagree_with_the_experts_are_refused(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    with pytest.raises(ValueError, match="training stream 'inverse'"):
        train_tiny(
            compose_cfg,
            "method=medc",
            "trainer.max_epochs=1",
            "method.embed_dim=8",
            "dataset.train_streams.inverse.reverse=false",
        )


def test_paper_setting_is_one_override_away(compose_cfg: Callable[..., DictConfig]) -> None:
    paper = compose_cfg("method=medc_paper").method
    default = compose_cfg("method=medc").method
    assert (paper.lambda_mu, paper.lambda_cls, paper.lambda_sigma) == (1.0, 1.0, 1.0)
    assert paper.sort_normalize is False and paper.sort_temperature == 1.0
    differing = {k for k in default if default[k] != paper[k]}
    assert differing <= {
        "lambda_mu",
        "lambda_cls",
        "lambda_sigma",
        "sort_normalize",
        "sort_temperature",
    }
