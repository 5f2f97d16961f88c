"""Image-LT baseline losses (issue #3) against hand-computed values.

Every expected value is written out with ``math`` on Python floats, entry by entry, never by
calling the implementation under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vltr.strategies.losses import (
    BinaryCrossEntropy,
    ClassBalancedLoss,
    EqualizationLoss,
    FocalLoss,
    LDAMDRWLoss,
    class_balanced_weights,
)

# m_c ~ n_c^(-1/4): 81 -> 1/3, 16 -> 1/2, 1 -> 1; scaled so the max is 0.5: [1/6, 1/4, 1/2]
COUNTS = [81, 16, 1]
MARGINS = [1 / 6, 1 / 4, 1 / 2]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(x: float, y: float) -> float:
    """-y log sigmoid(x) - (1 - y) log(1 - sigmoid(x)), via softplus for stability."""
    return y * math.log1p(math.exp(-x)) + (1 - y) * math.log1p(math.exp(x))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def cb_weights(counts: list[int], beta: float) -> list[float]:
    raw = [(1 - beta) / (1 - beta ** max(n, 1)) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def t(rows: list[list[float]], grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32, requires_grad=grad)


# -- focal -----------------------------------------------------------------------------------

Z = [[0.5, -1.0, 2.0], [2.0, 0.0, -0.7]]
Y_SOFT = [[1.0, 0.0, 0.3], [0.3, 1.0, 0.0]]


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_focal_matches_hand_computation_with_soft_targets(gamma: float) -> None:
    expected = []
    for zr, yr in zip(Z, Y_SOFT, strict=True):
        for z, y in zip(zr, yr, strict=True):
            p = sig(z)
            pt = p * y + (1 - p) * (1 - y)
            expected.append((1 - pt) ** gamma * bce(z, y))
    got = FocalLoss(gamma=gamma)(t(Z), t(Y_SOFT))
    assert got.item() == pytest.approx(mean(expected), rel=1e-5)


def test_focal_alpha_balancing_and_its_range() -> None:
    alpha = 0.25
    expected = []
    for zr, yr in zip(Z, Y_SOFT, strict=True):
        for z, y in zip(zr, yr, strict=True):
            p = sig(z)
            pt = p * y + (1 - p) * (1 - y)
            expected.append((alpha * y + (1 - alpha) * (1 - y)) * (1 - pt) * bce(z, y))
    got = FocalLoss(gamma=1.0, alpha=alpha)(t(Z), t(Y_SOFT))
    assert got.item() == pytest.approx(mean(expected), rel=1e-5)
    for bad in (0.0, 1.0, 1.5):  # FrameStack's alpha=1 is alpha=None here, not Lin's alpha=1
        with pytest.raises(ValueError, match="alpha"):
            FocalLoss(alpha=bad)


def test_focal_gamma_zero_is_bce() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g) * 3
    targets = torch.rand(8, 5, generator=g)
    targets[:4] = (targets[:4] > 0.5).float()
    want = F.binary_cross_entropy_with_logits(logits, targets)
    assert FocalLoss(gamma=0.0)(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)
    # and gamma > 0 really changes it (down-weights the easy entries)
    assert FocalLoss(gamma=1.0)(logits, targets).item() < want.item()


# -- LDAM-DRW --------------------------------------------------------------------------------


def test_ldam_margins_follow_n_to_the_minus_quarter_with_max_half() -> None:
    loss = LDAMDRWLoss(COUNTS)
    assert loss.margins.tolist() == pytest.approx(MARGINS, rel=1e-6)


def test_ldam_each_positive_gets_its_own_class_margin() -> None:
    s = 30.0
    z = [
        [0.20, 0.10, -0.30],  # two positives (classes 0 and 1): the multi-label case
        [0.05, 0.40, 0.60],  # one positive (class 2)
        [0.30, -0.20, 0.10],
    ]  # soft: class 0 half present
    y = [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.0, 0.0]]
    own, summed = [], []
    for zr, yr in zip(z, y, strict=True):
        sample_margin_sum = sum(m * yc for m, yc in zip(MARGINS, yr, strict=True))
        for zc, yc, m in zip(zr, yr, MARGINS, strict=True):
            own.append(bce(s * (zc - yc * m), yc))
            # VideoLT's released code: the sum of the sample's margins on every positive
            shifted = zc - sample_margin_sum if yc >= 1 else zc
            summed.append(bce(s * shifted, yc))
    got = LDAMDRWLoss(COUNTS, max_margin=0.5, scale=s)(t(z), t(y)).item()
    assert got == pytest.approx(mean(own), rel=1e-5)
    # the sum-of-margins version is a different loss on the two-label sample
    assert abs(mean(summed) - mean(own)) > 1e-2
    assert got != pytest.approx(mean(summed), rel=1e-3)


def test_drw_weights_one_before_drw_epoch_then_class_balanced() -> None:
    beta = 0.9999
    loss = LDAMDRWLoss(COUNTS, scale=1.0, drw_epoch=3, beta=beta)
    z = [[0.3, -0.4, 0.2], [-0.1, 0.5, -0.6]]
    y = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    terms = [
        [bce(zc - yc * m, yc) for zc, yc, m in zip(zr, yr, MARGINS, strict=True)]
        for zr, yr in zip(z, y, strict=True)
    ]

    loss.set_epoch(2)
    assert loss.class_weights.tolist() == [1.0, 1.0, 1.0]
    assert loss(t(z), t(y)).item() == pytest.approx(mean([v for r in terms for v in r]), rel=1e-5)

    loss.set_epoch(3)
    w = cb_weights(COUNTS, beta)
    assert loss.class_weights.tolist() == pytest.approx(w, rel=1e-5)
    assert sum(loss.class_weights.tolist()) == pytest.approx(3.0, rel=1e-6)
    assert w[2] > w[1] > w[0]
    weighted = [wc * v for r in terms for wc, v in zip(w, r, strict=True)]
    assert loss(t(z), t(y)).item() == pytest.approx(mean(weighted), rel=1e-5)

    never = LDAMDRWLoss(COUNTS, drw_epoch=None)
    never.set_epoch(1000)
    assert never.class_weights.tolist() == [1.0, 1.0, 1.0]


def test_ldam_default_drw_epoch_is_videolt_step() -> None:
    loss = LDAMDRWLoss(COUNTS)
    loss.set_epoch(49)
    assert not loss.reweighting
    loss.set_epoch(50)
    assert loss.reweighting


# -- EQL -------------------------------------------------------------------------------------


def test_eql_drops_negative_terms_of_tail_classes_only() -> None:
    counts = [1000, 50, 5]  # frequencies 0.948, 0.047, 0.0047; lambda 0.01 -> class 2 is tail
    loss = EqualizationLoss(counts, tail_lambda=0.01)
    assert loss.tail_mask.tolist() == [0.0, 0.0, 1.0]
    z = [[1.0, -0.5, 0.3], [-1.0, 2.0, -2.0], [0.2, 0.1, -0.4]]
    y = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # a positive of the tail class is kept
    expected = [
        bce(1.0, 1),
        bce(-0.5, 0),
        0.0,
        bce(-1.0, 0),
        bce(2.0, 1),
        0.0,
        bce(0.2, 0),
        bce(0.1, 0),
        bce(-0.4, 1),
    ]
    logits = t(z, grad=True)
    got = loss(logits, t(y))
    assert got.item() == pytest.approx(mean(expected), rel=1e-5)
    got.backward()
    assert logits.grad is not None
    assert logits.grad[0, 2] == 0 and logits.grad[1, 2] == 0  # tail negatives: no gradient
    assert logits.grad[0, 1] != 0 and logits.grad[2, 2] != 0  # head negative, tail positive


def test_eql_soft_target_keeps_positive_part_of_tail_class() -> None:
    loss = EqualizationLoss([1000, 5], tail_lambda=0.01)
    z = [[0.3, 0.7]]
    y = [[0.4, 0.4]]
    expected = [bce(0.3, 0.4), 0.4 * math.log1p(math.exp(-0.7))]  # tail: positive part only
    assert loss(t(z), t(y)).item() == pytest.approx(mean(expected), rel=1e-5)


def test_eql_thresholds() -> None:
    # the default lambda is VideoLT's tail boundary (n <= 100) as a frequency of its 196,798
    # training labels
    counts = [196_798 - 201, 100, 101]
    assert EqualizationLoss(counts).tail_mask.tolist() == [0.0, 1.0, 0.0]
    # the count form: n <= tail_max
    by_count = EqualizationLoss([1000, 50, 51, 0], tail_lambda=None, tail_max=50)
    assert by_count.tail_mask.tolist() == [0.0, 1.0, 0.0, 1.0]
    for kwargs in ({"tail_lambda": None, "tail_max": None}, {"tail_lambda": 0.1, "tail_max": 5}):
        with pytest.raises(ValueError, match="exactly one"):
            EqualizationLoss([10, 1], **kwargs)


def test_eql_ignore_prob_zero_is_bce() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=g)
    targets = (torch.rand(6, 3, generator=g) > 0.5).float()
    loss = EqualizationLoss([1000, 50, 5], tail_lambda=0.01, ignore_prob=0.0)
    want = F.binary_cross_entropy_with_logits(logits, targets)
    assert loss(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)


# -- class-balanced --------------------------------------------------------------------------


def test_cb_weights_finite_for_empty_class_sum_to_c_and_favour_rare() -> None:
    counts = [81, 16, 1, 0]
    w = class_balanced_weights(counts, beta=0.9999)
    assert torch.isfinite(w).all()
    assert w.tolist() == pytest.approx(cb_weights(counts, 0.9999), rel=1e-5)
    assert w.sum().item() == pytest.approx(4.0, rel=1e-6)
    assert w[0] < w[1] < w[2] == w[3]  # n = 0 counts as n = 1
    assert class_balanced_weights(counts, beta=0.0).tolist() == [1.0] * 4


@pytest.mark.parametrize("base", ["bce", "focal"])
def test_cb_loss_matches_hand_computation(base: str) -> None:
    beta, gamma = 0.999, 2.0
    w = cb_weights(COUNTS, beta)
    expected = []
    for zr, yr in zip(Z, Y_SOFT, strict=True):
        for z, y, wc in zip(zr, yr, w, strict=True):
            p = sig(z)
            pt = p * y + (1 - p) * (1 - y)
            modulator = (1 - pt) ** gamma if base == "focal" else 1.0
            expected.append(wc * modulator * bce(z, y))
    got = ClassBalancedLoss(COUNTS, beta=beta, base=base, gamma=gamma)(t(Z), t(Y_SOFT))
    assert got.item() == pytest.approx(mean(expected), rel=1e-5)
    with pytest.raises(ValueError, match="base"):
        ClassBalancedLoss(COUNTS, base="softmax")


# -- all losses ------------------------------------------------------------------------------

C = 4
COUNTS4 = [500, 60, 7, 0]


def _ldam_after_drw() -> nn.Module:
    loss = LDAMDRWLoss(COUNTS4, drw_epoch=1)
    loss.set_epoch(1)
    return loss


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "bce": lambda: BinaryCrossEntropy(COUNTS4),
    "focal": lambda: FocalLoss(COUNTS4),
    "focal_alpha": lambda: FocalLoss(COUNTS4, alpha=0.25),
    "ldam": lambda: LDAMDRWLoss(COUNTS4),
    "ldam_drw": _ldam_after_drw,
    "eql": lambda: EqualizationLoss(COUNTS4, tail_lambda=None, tail_max=10),
    "eql_random": lambda: EqualizationLoss(COUNTS4, tail_lambda=None, tail_max=10, ignore_prob=0.5),
    "cb": lambda: ClassBalancedLoss(COUNTS4),
    "cb_focal": lambda: ClassBalancedLoss(COUNTS4, base="focal"),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_losses_scalar_differentiable_finite_on_soft_targets(name: str) -> None:
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(5, C, generator=g) * 4).requires_grad_(True)
    targets = torch.rand(5, C, generator=g)  # mixup / FrameStack style soft targets
    targets[0] = torch.tensor([1.0, 0.0, 1.0, 0.0])  # and a multi-hot row
    loss = FACTORIES[name]()(logits, targets)
    assert loss.ndim == 0 and loss.requires_grad
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "cls,buffers",
    [
        (LDAMDRWLoss, {"margins", "drw_weights"}),
        (EqualizationLoss, {"tail_mask"}),
        (ClassBalancedLoss, {"class_weights"}),
    ],
)
def test_class_dependent_tensors_are_buffers_and_counts_are_required(
    cls: type[nn.Module], buffers: set[str]
) -> None:
    loss = cls(COUNTS4)
    assert buffers <= {n for n, _ in loss.named_buffers()}
    assert not buffers & set(loss.state_dict())  # rebuilt from counts, not loaded
    with pytest.raises(ValueError, match="class_counts"):
        cls(None)
    with pytest.raises(ValueError, match="classes"):
        loss(torch.zeros(2, C + 1), torch.zeros(2, C + 1))
