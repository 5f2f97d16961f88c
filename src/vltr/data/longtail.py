"""Long-tail tools: class-count profiles, head/medium/tail groups, imbalance statistics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GROUP_NAMES = ("head", "medium", "tail")


def group_masks(
    class_counts: np.ndarray, head_min: int = 500, tail_max: int = 100
) -> dict[str, np.ndarray]:
    """Boolean class masks by training count: tail ``n <= tail_max``, head ``n > head_min``.

    Medium is everything in between. The defaults are VideoLT's rule (tail n <= 100, medium
    100 < n <= 500, head n > 500: 340 / 617 / 47 classes on VideoLT); datasets set their own
    thresholds in their config (``dataset.groups``).
    """
    counts = np.asarray(class_counts)
    if tail_max >= head_min:
        raise ValueError(f"groups: tail_max ({tail_max}) must be below head_min ({head_min})")
    tail = counts <= tail_max
    head = counts > head_min
    return {"head": head, "medium": ~head & ~tail, "tail": tail}


def group_of_classes(class_counts: np.ndarray, head_min: int, tail_max: int) -> np.ndarray:
    """The group name of each class, as a ``[C]`` array of strings."""
    masks = group_masks(class_counts, head_min=head_min, tail_max=tail_max)
    out = np.empty(len(class_counts), dtype=object)
    for name in GROUP_NAMES:
        out[masks[name]] = name
    return out


def exponential_profile(num_classes: int, n_max: int, imbalance_ratio: float) -> np.ndarray:
    """Per-class counts ``n_r = int(n_max * mu^(r / (C - 1)))`` for ranks r = 0..C-1.

    ``imbalance_ratio`` mu = n_min / n_max (e.g. 0.01); this is the exponential profile of the
    long-tailed CIFAR / MiniKinetics recipes. Every class keeps at least one video.
    """
    if not 0 < imbalance_ratio <= 1:
        raise ValueError(f"imbalance_ratio must be in (0, 1], got {imbalance_ratio}")
    if num_classes < 1 or n_max < 1:
        raise ValueError("num_classes and n_max must be positive")
    r = np.arange(num_classes) / max(num_classes - 1, 1)
    return np.maximum((n_max * imbalance_ratio**r).astype(np.int64), 1)


def imbalance_ratio(class_counts: np.ndarray) -> float:
    """n_min / n_max over classes that have at least one video."""
    counts = np.asarray(class_counts)
    counts = counts[counts > 0]
    return float(counts.min() / counts.max()) if len(counts) else float("nan")


def imbalanced_subset(
    train_indices: np.ndarray,
    primary_labels: np.ndarray,
    ratio: float,
    n_max: int | None = None,
) -> np.ndarray:
    """The long-tailed subset of a training split: the Imbalanced-MiniKinetics200 recipe (MOVE).

    ``train_indices`` are the split's store indices in list order, ``primary_labels`` the class of
    each (same length; for multi-label stores the first label of each video). Classes that have
    training videos are ranked by descending count, ties broken by ascending class index (the
    released MOVE code ranks with an unstable ``argsort()[::-1]``, so its tie order is not
    defined); the class of rank r keeps its FIRST ``n_r = int(n_max * ratio^(r / (K - 1)))``
    videos in index order, or all of them when it has fewer. ``n_max`` defaults to the largest
    class count; K is the number of classes with training videos. Every class keeps at least one
    video (``n_r`` is floored at 1, as in :func:`exponential_profile`; only matters when
    ``n_max * ratio < 1``). Returns the kept store indices, sorted.
    """
    idx = np.asarray(train_indices, dtype=np.int64)
    labels = np.asarray(primary_labels, dtype=np.int64)
    if idx.shape != labels.shape or idx.ndim != 1:
        raise ValueError("train_indices and primary_labels must be 1-D arrays of the same length")
    if not 0 < ratio <= 1:
        raise ValueError(f"imbalance ratio must be in (0, 1], got {ratio}")
    if len(idx) == 0:
        return idx
    order = np.argsort(idx, kind="stable")  # list (index) order
    idx, labels = idx[order], labels[order]
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    # rank: descending count, ties by ascending class index (lexsort: last key is primary)
    ranked = present[np.lexsort((present, -counts[present]))]
    top = int(counts.max()) if n_max is None else int(n_max)
    target = exponential_profile(len(ranked), top, ratio)
    keep_per_class = np.zeros(len(counts), dtype=np.int64)
    keep_per_class[ranked] = np.minimum(target, counts[ranked])
    # position of each video among its class's videos, in index order
    by_class = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(labels), dtype=np.int64)
    position[by_class] = np.arange(len(labels)) - starts[labels[by_class]]
    return idx[position < keep_per_class[labels]]


def reversed_by_rank(values: np.ndarray) -> np.ndarray:
    """``resort``: the values in reversed order of size (float64, same shape, same sum).

    The largest entry gets the smallest value, the second largest the second smallest, and so
    on. Tied entries get the mean of the values their ranks receive, so equal entries stay
    equal whatever the sort order. On label frequencies this is MEDC's inverse distribution
    ``resort(omega)``; for an exponential count profile it is exactly ``∝ 1 / n_c``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError("reversed_by_rank: expects a 1-D array")
    order = np.argsort(v, kind="stable")
    out = np.empty_like(v)
    out[order] = v[order[::-1]]
    uniq, group = np.unique(v, return_inverse=True)
    sums = np.bincount(group, weights=out, minlength=len(uniq))
    return (sums / np.bincount(group, minlength=len(uniq)))[group]


# the class distributions a long-tailed method or evaluation draws from: the training labels'
# own (long-tailed), every class alike, and the long tail reversed (MEDC's resort(omega))
CLASS_DISTRIBUTIONS = ("longtailed", "uniform", "inverse")


def label_distribution(class_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``omega_c = n_c / sum_c n_c``, float64 ``[C]``; ``n_c`` clamped to ``>= 1`` (a class
    without training videos counts as the rarest possible, finite weights)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("class_counts must be a non-empty 1-D sequence")
    if bool((counts < 0).any()):
        raise ValueError("class_counts must be non-negative")
    counts = np.maximum(counts, 1.0)
    return counts / counts.sum()


def class_distribution(name: str, class_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """P(class), float64 ``[C]`` summing to 1: ``longtailed`` (the label frequencies),
    ``uniform`` or ``inverse`` (the frequencies reversed by rank, :func:`reversed_by_rank`)."""
    if name not in CLASS_DISTRIBUTIONS:
        raise ValueError(f"unknown class distribution {name!r}; choose from {CLASS_DISTRIBUTIONS}")
    freq = label_distribution(class_counts)
    if name == "longtailed":
        return freq
    if name == "uniform":
        return np.full_like(freq, 1.0 / freq.size)
    return reversed_by_rank(freq)
