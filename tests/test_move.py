"""MOVE (vltr.methods.move): eq. 7 criterion, DFS masks, extrapolation, calibrated interpolation,
masking of the views, deterministic inference, and an end-to-end run on a tiny store."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from vltr.data.datamodule import VideoBatch
from vltr.methods.base import MethodSetup
from vltr.methods.move import (
    MoveModule,
    calibrated_interpolation,
    dfs_lower_bounds,
    dynamic_frame_mask,
    tail_weighted_criterion,
)
from vltr.models.attention import MoveDualAggregator
from vltr.strategies.losses import BinaryCrossEntropy

from conftest import train_tiny

# class 0 the rarest (tau 0), class 3 the most frequent (tau 1)
COUNTS = [4, 40, 100, 400]
T = 60


def make_module(
    counts: list[int] = COUNTS, aggregator: nn.Module | None = None, **kwargs: object
) -> MoveModule:
    agg = aggregator or MoveDualAggregator(
        8, num_heads=2, num_clusters=4, attentive_dim=6, codebook_dim=5
    )
    return MoveModule(
        MethodSetup(
            aggregator=agg,
            loss=BinaryCrossEntropy(),
            optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
            class_counts=counts,
        ),
        **kwargs,
    )


def one_hot(classes: list[int], c: int = len(COUNTS)) -> torch.Tensor:
    y = torch.zeros(len(classes), c)
    y[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return y


def batch_of(classes: list[int], t: int = 20, d: int = 8, seed: int = 0) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    return VideoBatch(
        features=torch.randn(len(classes), t, d, generator=g).half(),
        targets=one_hot(classes),
        index=torch.arange(len(classes)),
    )


def test_tau_from_counts() -> None:
    tau = tail_weighted_criterion([10, 110, 60, 10, 210])
    assert torch.allclose(tau, torch.tensor([0.0, 0.5, 0.25, 0.0, 1.0]))
    assert tau.dtype == torch.float32
    # n_max == n_min: no 0/0, every class counts as the rarest
    assert torch.equal(tail_weighted_criterion([7, 7, 7]), torch.zeros(3))
    with pytest.raises(ValueError):
        tail_weighted_criterion([3, -1])


def test_dfs_mask_sizes_within_bounds() -> None:
    torch.manual_seed(0)
    tau = tail_weighted_criterion(COUNTS)
    reps = 500
    classes = [0, 1, 2, 3] * reps
    targets = one_hot(classes)
    frames = torch.full((len(classes),), T)
    lower = dfs_lower_bounds(targets, tau, frames, sigma=3)
    expected = [max(math.floor((n - 4) / (400 - 4) * T), 3) for n in COUNTS]
    assert lower[:4].tolist() == expected and expected[0] == 3 and expected[3] == T
    mask = dynamic_frame_mask(lower, torch.ones(len(classes), T, dtype=torch.bool))
    sizes = mask.sum(dim=1).view(reps, 4)
    for k in range(4):
        assert sizes[:, k].min() >= expected[k] and sizes[:, k].max() <= T
        # the whole range is used (both ends included), not a fixed size
        assert sizes[:, k].min() <= expected[k] + 2 and sizes[:, k].max() >= T - 2
    # padded videos: I is drawn among the real frames only, T = the number of real frames
    valid = torch.arange(T).expand(8, T) < 20
    padded = dynamic_frame_mask(torch.full((8,), 3), valid)
    assert not (padded & ~valid).any() and (padded.sum(1) >= 3).all()
    assert (padded.sum(1) <= 20).all()


def test_tail_masks_vary_more_than_head() -> None:
    torch.manual_seed(1)
    module = make_module()
    batch = batch_of([0] * 300 + [2] * 300 + [3] * 300, t=T)
    mask_u, mask_v = module.view_masks(batch)
    sizes = mask_u.sum(1).float()
    tail, medium, head = sizes[:300], sizes[300:600], sizes[600:]
    assert tail.var() > medium.var() > head.var()
    assert torch.all(head == T)  # tau = 1: the whole clip, nothing to vary
    # the two views are independent draws: tail views differ, head views are identical
    assert (mask_u[:300] != mask_v[:300]).any(dim=1).float().mean() > 0.9
    assert torch.equal(mask_u[600:], mask_v[600:])


def test_multilabel_video_follows_rarest_class() -> None:
    tau = tail_weighted_criterion(COUNTS)
    targets = torch.tensor([[1.0, 0, 0, 1.0], [0, 0, 0, 1.0], [0, 0, 0, 0]])
    frames = torch.full((3,), T)
    assert dfs_lower_bounds(targets, tau, frames, 3).tolist() == [3, T, T]
    # the released code's rule: floor of the mean of the per-class bounds max(tau T, sigma)
    assert dfs_lower_bounds(targets, tau, frames, 3, "mean").tolist() == [31, T, T]


def test_omega_in_one_two_per_sample() -> None:
    torch.manual_seed(0)
    omega = make_module().sample_omega(20000)
    assert omega.min() >= 1.0 and omega.max() <= 2.0
    assert omega.std() > 0.1 and abs(omega.mean().item() - 1.5) < 0.01  # Beta(2, 2) + 1
    per_batch = make_module(per_sample=False).sample_omega(64)
    assert torch.all(per_batch == per_batch[0])


def test_calibrated_labels() -> None:
    module = make_module(gamma=0.5)
    weight = module.label_weight  # (1 - tau) + gamma
    assert weight[0] == pytest.approx(1.5) and weight[3] == pytest.approx(0.5)
    y = one_hot([0, 3])  # a tail video, a head video
    z = torch.randn(2, 4)
    # no mixing (lambda = 1): the tail positive stays 1 (1.5 clamped), the head one is gamma
    _, labels = calibrated_interpolation(z, y, torch.ones(2), torch.tensor([1, 0]), weight)
    assert labels[0, 0] == 1.0 and labels[1, 3] == pytest.approx(0.5)
    # mixed half and half: the tail class keeps more label mass than the head class
    mixed_z, labels = calibrated_interpolation(
        z, y, torch.full((2,), 0.5), torch.tensor([1, 0]), weight
    )
    assert labels[0, 0] == pytest.approx(0.75) and labels[0, 3] == pytest.approx(0.25)
    assert labels[0, 0] > labels[0, 3]
    assert torch.allclose(mixed_z[0], 0.5 * (z[0] + z[1]))
    # random ratios: always in [0, 1]
    torch.manual_seed(0)
    y = (torch.rand(256, 4) < 0.6).float()
    _, labels = calibrated_interpolation(
        torch.randn(256, 3), y, module.sample_lambda(256), torch.randperm(256), weight
    )
    assert labels.max() <= 1.0 and labels.min() >= 0.0 and labels.max() == 1.0


def test_masked_frames_do_not_influence_views() -> None:
    module = make_module()
    batch = batch_of([0, 0, 1, 0, 2, 0], t=30)
    torch.manual_seed(3)
    mask_u, mask_v = module.view_masks(batch)
    torch.manual_seed(3)
    u, v = module.views(batch)
    dropped = ~mask_u & ~mask_v
    assert dropped.any()
    garbage = batch.features.clone()
    garbage[dropped] = float("nan")
    garbage[dropped.nonzero()[0, 0], dropped.nonzero()[0, 1], 0] = 1e4
    torch.manual_seed(3)
    u2, v2 = module.views(VideoBatch(garbage, batch.targets, batch.index))
    assert torch.equal(u, u2) and torch.equal(v, v2)
    # a frame inside a view does change it (the check above is not vacuous); with running
    # statistics (eval mode) and only that view: training-mode BatchNorms couple the batch
    module.eval()
    torch.manual_seed(3)
    u, v = module.views(batch)
    kept = (mask_u & ~mask_v).nonzero()[0]
    changed = batch.features.clone()
    changed[kept[0], kept[1]] += 1.0
    torch.manual_seed(3)
    u3, v3 = module.views(VideoBatch(changed, batch.targets, batch.index))
    assert not torch.allclose(u3[kept[0]], u[kept[0]]) and torch.equal(v3, v)


def test_head_video_views_are_the_whole_clip() -> None:
    module = make_module()
    u, v = module.views(batch_of([3, 3, 3]))
    full = module.aggregator(batch_of([3, 3, 3]).features.float())
    assert torch.allclose(u, v) and torch.allclose(u, full, atol=1e-6)


def test_inference_is_deterministic() -> None:
    module = make_module(
        aggregator=MoveDualAggregator(
            8, num_heads=2, num_clusters=4, attentive_dim=6, codebook_dim=5, dropout=0.3
        )
    )
    batch = batch_of([0, 1, 2, 3, 0])
    module.eval()
    state = torch.get_rng_state()
    with torch.no_grad():
        a = module(batch.features, batch.mask)
        b = module(batch.features, batch.mask)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())  # nothing random was drawn
    # and it is the plain unmasked aggregator + classifier
    with torch.no_grad():
        expected = module.classifier(module.aggregator(batch.features.float()))
    assert torch.equal(a, expected)


def test_training_loss_reaches_both_aggregators() -> None:
    torch.manual_seed(0)
    module = make_module()
    loss = module.training_loss(batch_of([0, 1, 2, 3, 0, 1]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for part in (module.aggregator.psa.q_proj, module.aggregator.netvlad.assign, module.classifier):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0


def test_bad_arguments_fail_clearly() -> None:
    class NoMask(nn.Module):
        output_dim = 8

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(1)

    with pytest.raises(ValueError, match="NoMask"):
        make_module(aggregator=NoMask())
    with pytest.raises(ValueError, match="tau_reduction"):
        make_module(tau_reduction="max")
    with pytest.raises(ValueError, match="sigma"):
        make_module(sigma=0)


def test_config_selects_move_dual_and_the_papers_schedule(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg("method=move")
    assert cfg.method._target_ == "vltr.methods.move.MoveModule"
    assert cfg.aggregator._target_.endswith("MoveDualAggregator")
    assert cfg.head._target_.endswith("NonLinearHead")
    paper = compose_cfg("method=move", "schedule=move")
    assert paper.trainer.max_epochs == 100 and paper.schedule.optimizer.lr == 1e-3
    assert list(paper.schedule.scheduler.milestones) == [50]
    assert (cfg.method.alpha, cfg.method.gamma, cfg.method.sigma) == (2.0, 0.5, 3)
    assert cfg.aggregator.num_heads == 4 and cfg.aggregator.num_clusters == 64


def test_move_trains_end_to_end(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg, _ = train_tiny(
        compose_cfg,
        "method=move",
        "trainer.max_epochs=2",
        "aggregator.attentive_dim=32",
        "aggregator.codebook_dim=32",
        "aggregator.num_clusters=8",
        drop=("aggregator.hidden_dim",),
    )
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["test"]


class _Recorder(nn.Module):
    """Wraps an aggregator; records the batch sizes and masks it was called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.output_dim = inner.output_dim
        self.calls: list[tuple[int, torch.Tensor | None]] = []

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((x.shape[0], mask))
        return self.inner(x, mask)


class _CaptureLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.targets: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.targets = targets
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def _ablated(**switches: object) -> tuple[MoveModule, _Recorder, _CaptureLoss]:
    agg = _Recorder(
        MoveDualAggregator(8, num_heads=2, num_clusters=4, attentive_dim=6, codebook_dim=5)
    )
    loss = _CaptureLoss()
    module = MoveModule(
        MethodSetup(
            aggregator=agg,
            loss=loss,
            class_counts=COUNTS,
            optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        ),
        **switches,
    )
    return module, agg, loss


def test_ablation_switches_remove_their_component() -> None:
    batch = batch_of([0, 1, 2, 3, 0, 1], t=20)
    # full MOVE: two masked views, mixed and calibrated targets
    torch.manual_seed(0)
    module, agg, loss = _ablated()
    module.training_loss(batch)
    ((n, mask),) = agg.calls
    assert n == 12 and not bool(mask.all())
    assert not torch.equal(loss.targets, batch.targets)
    # Table 4 (e) "Ex." only: no interpolation -> the original targets
    torch.manual_seed(0)
    module, agg, loss = _ablated(interpolation=False)
    module.training_loss(batch)
    assert torch.equal(loss.targets, batch.targets) and agg.calls[0][0] == 12
    # Table 4 (f) "In." only: one whole-clip view, mixed targets
    torch.manual_seed(0)
    module, agg, loss = _ablated(frame_sampler="none", extrapolation=False)
    module.training_loss(batch)
    ((n, mask),) = agg.calls
    assert n == 6 and bool(mask.all())
    assert not torch.equal(loss.targets, batch.targets)
    # without calibration: plain mixup labels, which sum to the mixed label count
    torch.manual_seed(0)
    module, agg, loss = _ablated(calibration=False)
    module.training_loss(batch)
    assert torch.allclose(loss.targets.sum(dim=1), torch.ones(6))
    torch.manual_seed(0)
    module, agg, loss = _ablated()
    module.training_loss(batch)
    assert not torch.allclose(loss.targets.sum(dim=1), torch.ones(6))
    # uniform frame sampler: a head-class video (tau = 1) is cut like a tail one
    torch.manual_seed(0)
    dynamic, _, _ = _ablated()
    uniform, _, _ = _ablated(frame_sampler="uniform")
    head = batch_of([3] * 8, t=20)
    assert all(bool(m.all()) for m in dynamic.view_masks(head))
    assert not all(bool(m.all()) for m in uniform.view_masks(head))
    with pytest.raises(ValueError, match="frame_sampler"):
        make_module(frame_sampler="nope")


def test_head_choice_reaches_the_classifier(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module

    from vltr.models.heads import LinearHead, NonLinearHead
    from vltr.training.builders import build_module
    from vltr.utils.errors import ConfigError

    class Info:  # what build_module reads of a DatasetInfo
        dim, num_classes = 8, 4
        class_counts = torch.tensor(COUNTS).numpy()
        head_min, tail_max = 100, 10

    with initialize_config_module("vltr.conf", version_base="1.3"):
        for overrides, expected in (
            ([], LinearHead),
            (["head=nonlinear"], NonLinearHead),
            (["method=move"], NonLinearHead),
            (["method=move", "head=linear"], LinearHead),
            (["method=framestack", "head=nonlinear"], NonLinearHead),
        ):
            cfg = compose(
                "train",
                overrides=[*overrides, "aggregator=psa", f"paths.root_dir={tmp_path}"],
                return_hydra_config=True,
            )
            module = build_module(cfg, Info())
            assert type(module.classifier) is expected, overrides
            if expected is NonLinearHead:
                assert module.classifier[0].out_features == 2048
                assert module.classifier[2].p == 0.5
        # a strategy a method does not compose with fails at build time, in one line
        cfg = compose(
            "train",
            overrides=[
                "method=move",
                "strategy=mixup",
                "aggregator=psa",
                f"paths.root_dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
        with pytest.raises(ConfigError, match="strategy=mixup does not compose with MoveModule"):
            build_module(cfg, Info())
