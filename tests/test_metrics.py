"""Metrics against sklearn and a direct loop: random, multi-label, zero-positive, ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from vltr.data.longtail import exponential_profile, group_masks
from vltr.evaluation.metrics import VideoLTMetrics, average_precision, summarize, topk_accuracy


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    out = np.zeros(scores.shape[1])
    for c in range(scores.shape[1]):
        if targets[:, c].any():
            out[c] = average_precision_score(targets[:, c], scores[:, c])
    return out


def random_case(seed: int, n: int = 300, c: int = 25, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.01, 0.3, size=c)).astype(np.float32)
    s = (y * rng.uniform(0, 2, size=c) + rng.standard_normal((n, c))).astype(np.float32)
    if ties:
        s = np.round(s * 2) / 2  # many exact ties, also across positives and negatives
    return s, y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_ap_matches_sklearn(seed: int, ties: bool) -> None:
    s, y = random_case(seed, ties=ties)
    np.testing.assert_allclose(average_precision(s, y), sklearn_ap(s, y), atol=1e-12)


def test_ap_multilabel_and_zero_positive_classes() -> None:
    s, y = random_case(7)
    y[:, :5] = np.maximum(y[:, :5], y[:, 5:10])  # heavy label co-occurrence
    y[:, 3] = 0  # a class without positives: AP 0, stays in the mean
    ap = average_precision(s, y)
    assert ap[3] == 0.0
    np.testing.assert_allclose(ap, sklearn_ap(s, y), atol=1e-12)
    result, per_class = summarize(s, y)
    assert result["mAP"] == pytest.approx(per_class.mean())
    assert result["mAP"] < per_class[np.arange(25) != 3].mean()


def test_ap_hand_example() -> None:
    # ranks: pos(0.9) neg(0.8) pos(0.7) -> AP = (1/1 + 2/3) / 2
    s = np.array([[0.9], [0.8], [0.7], [0.1]], dtype=np.float32)
    y = np.array([[1], [0], [1], [0]])
    assert average_precision(s, y)[0] == pytest.approx((1 + 2 / 3) / 2)
    # a tie between a positive and a negative counts both at that threshold
    s_tie = np.array([[0.5], [0.5]], dtype=np.float32)
    assert average_precision(s_tie, np.array([[1], [0]]))[0] == pytest.approx(0.5)


def test_ap_ranks_logits_not_saturated_sigmoids() -> None:
    logits = torch.tensor([[30.0], [25.0], [20.0]])
    y = torch.tensor([[0.0], [1.0], [0.0]])
    # sigmoid(20..30) == 1.0 in float32: ranking on probabilities would tie all three
    assert torch.sigmoid(logits).unique().numel() == 1
    assert average_precision(logits, y)[0] == pytest.approx(0.5)


def test_topk_matches_direct_loop() -> None:
    s, y = random_case(3, n=200, c=12)
    y[0] = 0  # a sample with no label is a miss
    for k in (1, 3, 5):
        hits = 0
        for i in range(len(s)):
            top = np.argsort(-s[i], kind="stable")[:k]
            hits += bool(y[i, top].any())
        assert topk_accuracy(s, y, k) == pytest.approx(hits / len(s))


def test_videolt_groups_rule() -> None:
    counts = np.array([50, 100, 101, 500, 501, 2000])
    g = group_masks(counts)
    assert g["tail"].tolist() == [True, True, False, False, False, False]
    assert g["medium"].tolist() == [False, False, True, True, False, False]
    assert g["head"].tolist() == [False, False, False, False, True, True]
    profile = exponential_profile(100, 1000, 0.01)
    assert profile[0] == 1000 and profile[-1] == 10 and np.all(np.diff(profile) <= 0)


def test_metric_drops_padding_duplicates_and_groups() -> None:
    s, y = random_case(11, n=64, c=6)
    counts = np.array([600, 300, 200, 90, 40, 10])
    m = VideoLTMetrics(counts, head_min=500, tail_max=100)
    idx = torch.arange(64)
    m.update(torch.from_numpy(s[:40]), torch.from_numpy(y[:40]), idx[:40])
    m.update(torch.from_numpy(s[40:]), torch.from_numpy(y[40:]), idx[40:])
    # DistributedSampler pads by repeating the first samples: they must not count twice
    m.update(torch.from_numpy(s[:3]), torch.from_numpy(y[:3]), idx[:3])
    result = m.compute()
    expected, ap = summarize(s, y, group_masks(counts))
    assert result == pytest.approx(expected)
    assert result["mAP_head"] == pytest.approx(ap[0])
    assert result["mAP_tail"] == pytest.approx(ap[3:].mean())
