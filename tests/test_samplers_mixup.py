"""CBS / SRS samplers (frequencies, epoch length, DDP shares) and feature-space mixup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vltr.data.longtail import reversed_by_rank
from vltr.data.samplers import ClassAwareSampler
from vltr.data.store import FeatureStore, write_store
from vltr.strategies.mixup import FeatureMixup


@pytest.fixture(scope="module")
def lt_store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    # 5 classes with 400 / 100 / 25 / 9 / 1 single-label training videos + 10 two-label videos
    counts = [400, 100, 25, 9, 1]
    labels = [[c] for c, n in enumerate(counts) for _ in range(n)]
    labels += [[0, 4]] * 10
    n = len(labels)
    path = tmp_path_factory.mktemp("lt") / "lt.h5"
    write_store(
        path,
        np.zeros((n, 2, 2), dtype=np.float32),
        labels=labels,
        class_names=list("abcde"),
        splits={"train": range(n), "val": [0], "test": [1]},
    )
    return FeatureStore(path)


def class_frequencies(store: FeatureStore, sampler: ClassAwareSampler, epochs: int) -> np.ndarray:
    """How often a drawn video carries each class, normalised over drawn (video, class) hits."""
    train = store.split("train")
    hits = np.zeros(store.num_classes)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for pos in sampler:
            hits[store.labels(int(train[pos]))] += 1
    return hits


def test_cbs_draws_classes_uniformly(lt_store: FeatureStore) -> None:
    train = lt_store.split("train")
    sampler = ClassAwareSampler(lt_store, train, power=0.0, num_samples=5000, seed=1)
    assert len(sampler) == 5000 and len(list(sampler)) == 5000
    # the drawn class is uniform; co-occurring labels (class 0 next to 4) add on top, so look
    # at the class that was drawn: every single-label class's share is ~1/5
    seq = sampler.epoch_sequence()
    single = np.array([len(lt_store.labels(int(train[p]))) == 1 for p in seq])
    drawn = np.array([lt_store.labels(int(train[p]))[0] for p in seq])[single]
    freq = np.bincount(drawn, minlength=5) / len(seq)
    # class 4's pool has 1 single-label video out of 11: its single-label share is 1/5 * 1/11
    np.testing.assert_allclose(freq[:4], 0.2, atol=0.03)
    assert 0 < freq[4] < 0.05


def test_srs_draws_classes_by_square_root(lt_store: FeatureStore) -> None:
    train = lt_store.split("train")
    sampler = ClassAwareSampler(lt_store, train, power=0.5, num_samples=20000, seed=2)
    counts = lt_store.class_counts("train")
    expected = np.sqrt(counts) / np.sqrt(counts).sum()
    np.testing.assert_allclose(sampler.class_probs, expected)
    seq = sampler.epoch_sequence()
    # each draw picks a class, then a video of that class: count the drawn class through pools
    rng_free = np.zeros(5)
    for c in range(5):
        pool = set(sampler.pool_positions[sampler.pool_starts[c] : sampler.pool_starts[c + 1]])
        rng_free[c] = np.isin(seq, list(pool)).mean()
    # single-label classes 1..3 have disjoint pools: their share is the class probability
    np.testing.assert_allclose(rng_free[1:4], expected[1:4], atol=0.01)


def test_reversed_sampler_draws_the_inverse_long_tail(lt_store: FeatureStore) -> None:
    train = lt_store.split("train")
    counts = lt_store.class_counts("train")  # 410, 100, 25, 9, 11 (two-label videos count)
    sampler = ClassAwareSampler(lt_store, train, power=1.0, reverse=True, num_samples=20000, seed=3)
    freq = counts / counts.sum()
    np.testing.assert_allclose(sampler.class_probs, reversed_by_rank(freq))
    # the most frequent class gets the rarest class's share, and so on
    assert sampler.class_probs[0] == pytest.approx(9 / counts.sum())
    assert sampler.class_probs[3] == pytest.approx(410 / counts.sum())
    # tied values share their ranks' mean; the sum is kept
    np.testing.assert_allclose(
        reversed_by_rank(np.array([3.0, 1.0, 1.0, 5.0])), [1.0, 4.0, 4.0, 1.0]
    )
    seq = sampler.epoch_sequence()
    pool = set(sampler.pool_positions[sampler.pool_starts[3] : sampler.pool_starts[4]])
    assert np.isin(seq, list(pool)).mean() == pytest.approx(sampler.class_probs[3], abs=0.02)


def test_default_epoch_length_is_training_set(lt_store: FeatureStore) -> None:
    train = lt_store.split("train")
    assert len(ClassAwareSampler(lt_store, train)) == len(train)


def test_two_ranks_draw_disjoint_shares_of_one_sequence(lt_store: FeatureStore) -> None:
    train = lt_store.split("train")
    one = ClassAwareSampler(lt_store, train, num_samples=1001, seed=5, num_replicas=1, rank=0)
    ranks = [
        ClassAwareSampler(lt_store, train, num_samples=1001, seed=5, num_replicas=2, rank=r)
        for r in range(2)
    ]
    for epoch in (0, 3):
        for s in (one, *ranks):
            s.set_epoch(epoch)
        full = ranks[0].epoch_sequence()
        assert len(ranks[0]) == len(ranks[1]) == 501
        r0, r1 = list(ranks[0]), list(ranks[1])
        # positions in the epoch sequence are split, never shared
        assert r0 == full[0::2].tolist() and r1 == full[1::2].tolist()
        assert list(one) == one.epoch_sequence()[:1001].tolist()
        assert np.array_equal(full[:1001], one.epoch_sequence()[:1001])
    ranks[0].set_epoch(0)
    a = list(ranks[0])
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != a  # a new epoch, new draws


def test_class_without_videos_is_never_drawn(tmp_path: Path) -> None:
    path = write_store(
        tmp_path / "s.h5",
        np.zeros((4, 1, 1), dtype=np.float32),
        labels=[[0], [0], [1], [1]],
        class_names=list("abc"),
        splits={"train": range(4), "val": [0], "test": [1]},
    )
    store = FeatureStore(path)
    sampler = ClassAwareSampler(store, store.split("train"), num_samples=200)
    assert sampler.class_probs[2] == 0
    assert set(sampler) <= {0, 1, 2, 3}


def test_mixup_frames_and_embedding() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3)
    y = torch.eye(6)[:, :5]
    mixer = FeatureMixup(alpha=1.0)
    torch.manual_seed(1)
    xm, ym = mixer.mix(x, y)
    torch.manual_seed(1)
    perm, lam = mixer.sample(6, x.device)
    assert torch.all(lam == lam[0])  # one lambda per batch, as VideoLT
    torch.testing.assert_close(xm, lam[0] * x + (1 - lam[0]) * x[perm])
    torch.testing.assert_close(ym, lam[0] * y + (1 - lam[0]) * y[perm])
    # label mass is conserved for single-label rows
    torch.testing.assert_close(ym.sum(1)[y.sum(1) > 0].mean(), torch.tensor(1.0), atol=0.5, rtol=0)
    per_sample = FeatureMixup(alpha=0.4, per_sample=True, level="embedding")
    _, lam = per_sample.sample(1000, x.device)
    assert lam.std() > 0.1 and 0 <= lam.min() and lam.max() <= 1
    assert abs(lam.mean().item() - 0.5) < 0.05
    with pytest.raises(ValueError, match="level"):
        FeatureMixup(level="pixels")
