"""Test-distribution-agnostic evaluation: resampling (unit) and ``vltr-eval
eval.test_distribution=...`` (end to end on a tiny trained checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest

from vltr.data.longtail import exponential_profile, group_masks
from vltr.errors import ConfigError
from vltr.evaluation.resample import (
    effective_distribution,
    parse_distributions,
    primary_classes,
    resample_indices,
    resampled_metrics,
    target_distribution,
)
from vltr.methods.medc import reversed_frequencies
from vltr.metrics import summarize

KEYS = ("mAP", "mAP_head", "mAP_medium", "mAP_tail", "acc1", "acc5")


def long_tailed_test_set(
    seed: int = 0, num_classes: int = 20, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train counts 200 -> 4, a test split with the same profile (at least 2 per class), some
    two-label videos, and scores = label signal + noise: (scores, targets, train counts)."""
    rng = np.random.default_rng(seed)
    train = exponential_profile(num_classes, 200, 0.02)
    test = np.maximum(train // 2, 2)
    labels = np.repeat(np.arange(num_classes), test)
    y = np.zeros((len(labels), num_classes), dtype=np.float32)
    y[np.arange(len(labels)), labels] = 1
    second = np.flatnonzero(rng.random(len(labels)) < 0.15)  # second labels long-tailed too
    y[second, rng.choice(num_classes, size=len(second), p=train / train.sum())] = 1
    # the model is better on classes it saw more often, as a long-tailed model is
    quality = np.log(train) / np.log(train).max()
    s = y * (1.0 + 2.0 * quality) + noise * rng.standard_normal(y.shape)
    return s.astype(np.float32), y, train


def test_target_distributions_and_inverse_is_medc_resort() -> None:
    counts = np.array([60, 40, 20, 10, 6])
    uni = target_distribution("uniform", counts)
    lt = target_distribution("longtailed", counts)
    inv = target_distribution("inverse", counts)
    for p in (uni, lt, inv):
        assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(uni, 0.2)
    np.testing.assert_allclose(lt, counts / counts.sum())
    # the rarest class gets the head's frequency: MEDC's resort, reused, not re-derived
    import torch

    np.testing.assert_allclose(inv, reversed_frequencies(torch.as_tensor(lt)).numpy())
    np.testing.assert_allclose(inv, counts[::-1] / counts.sum())


def test_primary_class_is_the_rarest_positive() -> None:
    counts = np.array([50, 5, 20, 5])
    y = np.array([[1, 0, 1, 0],   # 0 and 2: 2 is rarer
                  [1, 1, 0, 1],   # 1 and 3 tie at 5: lower index
                  [1, 0, 0, 0],
                  [0, 0, 0, 0]])  # no label: never drawn
    assert primary_classes(y, counts).tolist() == [2, 1, 0, -1]


@pytest.mark.parametrize("name", ["uniform", "longtailed", "inverse"])
def test_drawn_class_frequencies_match_the_target(name: str) -> None:
    _, y, train = long_tailed_test_set()
    primary = primary_classes(y, train)
    probs = target_distribution(name, train)
    expected = effective_distribution(probs, primary)
    idx = resample_indices(primary, probs, 200_000, np.random.default_rng(0))
    drawn = np.bincount(primary[idx], minlength=len(train)) / len(idx)
    # 200k draws: the standard error of a class share is below 0.0012
    np.testing.assert_allclose(drawn, expected, atol=0.005)
    if name == "uniform":
        np.testing.assert_allclose(drawn, 1 / len(train), atol=0.005)


def test_classes_without_a_test_video_are_skipped_and_the_rest_renormalised() -> None:
    counts = np.array([100, 50, 10])
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]])  # class 1 has no test video
    primary = primary_classes(y, counts)
    p = effective_distribution(target_distribution("uniform", counts), primary)
    np.testing.assert_allclose(p, [0.5, 0.0, 0.5])
    idx = resample_indices(primary, target_distribution("uniform", counts), 5000,
                           np.random.default_rng(1))
    assert set(idx.tolist()) == {0, 1, 2}


def test_longtailed_resampling_of_a_long_tailed_split_matches_the_plain_metrics() -> None:
    s, y, train = long_tailed_test_set()
    groups = group_masks(train, head_min=60, tail_max=15)
    plain, _ = summarize(s, y, groups)
    res = resampled_metrics(s, y, train, groups, ["longtailed"], repeats=5, seed=0,
                            size=20 * len(s))
    for key in KEYS:
        assert res["longtailed"][key] == pytest.approx(plain[key], abs=0.03), key
    # the point of the exercise: a uniform test distribution weighs the weak tail more
    uni = resampled_metrics(s, y, train, groups, ["uniform"], repeats=5, seed=0)["uniform"]
    assert uni["acc1"] < plain["acc1"]


def test_resampling_is_deterministic_given_the_seed() -> None:
    s, y, train = long_tailed_test_set()
    groups = group_masks(train, head_min=60, tail_max=15)
    names = ["uniform", "longtailed", "inverse"]
    a = resampled_metrics(s, y, train, groups, names, repeats=3, seed=7)
    b = resampled_metrics(s, y, train, groups, names, repeats=3, seed=7)
    c = resampled_metrics(s, y, train, groups, names, repeats=3, seed=8)
    assert a == b
    assert a != c
    # one stream per distribution: asking for fewer distributions changes nothing else
    assert resampled_metrics(s, y, train, groups, ["inverse"], repeats=3, seed=7) == {
        "inverse": a["inverse"]}
    for name in names:
        assert set(a[name]) == {*KEYS, *(f"{k}_std" for k in KEYS)}
        assert all(a[name][f"{k}_std"] > 0 for k in ("mAP", "acc1"))


def test_parse_distributions() -> None:
    assert parse_distributions(None) == []
    assert parse_distributions("uniform") == ["uniform"]
    assert parse_distributions(["uniform", "inverse", "uniform"]) == ["uniform", "inverse"]
    with pytest.raises(ConfigError, match="unknown distribution 'balanced'"):
        parse_distributions(["uniform", "balanced"])
