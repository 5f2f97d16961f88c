"""Test-distribution-agnostic evaluation: the test split resampled to other class distributions.

A long-tailed test split rewards head-class accuracy; MEDC (and SADE before it) argue that a
model should be judged under any test class distribution. This module redraws the test split
from its own videos, so one set of predictions is scored under several distributions:

1. Each test video gets a **primary class**: its rarest positive label by *training* count
   (ties: the lower class index). A multi-label video is thus filed under the class whose
   frequency a long-tail method changes most; videos without a label are never drawn.
2. For a target distribution ``p`` over classes (``uniform``: 1/C; ``longtailed``: proportional
   to the training counts; ``inverse``: the training frequencies reversed in rank, MEDC's
   ``resort`` via :func:`vltr.data.longtail.class_distribution`), classes that are no test
   video's primary class are dropped and ``p`` is renormalised over the rest.
3. ``size`` draws with replacement: a class from ``p``, then one of its videos uniformly.
4. The drawn set is scored with :func:`vltr.evaluation.metrics.summarize` (tie-aware AP, so
   duplicated videos are counted consistently), leaving classes without a drawn positive out of the
   means; repeated ``repeats`` times, reported as mean and sample std.

Everything here is a pure function of numpy arrays and a seed: cheap to test, and the same on
every DDP rank.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from vltr.data.longtail import CLASS_DISTRIBUTIONS, class_distribution
from vltr.evaluation.metrics import summarize
from vltr.utils.errors import ConfigError

DISTRIBUTIONS = ("uniform", "longtailed", "inverse")
# our names -> MEDC's expert names (the same three distributions)


def parse_distributions(value: str | Iterable[str] | None) -> list[str]:
    """``eval.test_distribution`` as a list of names (``null`` -> ``[]``: the split as it is).

    Accepts one name or a list; an unknown name is a :class:`ConfigError` (one line, exit 2).
    """
    if value is None:
        return []
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    for name in names:
        if name not in DISTRIBUTIONS:
            raise ConfigError(
                f"eval.test_distribution: unknown distribution {name!r} "
                f"(choose from {', '.join(DISTRIBUTIONS)}, or null)"
            )
    return list(dict.fromkeys(names))


def target_distribution(name: str, class_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """P(class) ``[C]`` (float64, sums to 1) of a named distribution, from training counts."""
    if name not in CLASS_DISTRIBUTIONS:
        raise ValueError(f"unknown test distribution {name!r}; choose from {DISTRIBUTIONS}")
    return class_distribution(name, np.asarray(class_counts))


def primary_classes(targets: np.ndarray, class_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Each video's rarest positive class by training count (ties: lower index), ``-1`` if none.

    ``targets``: multi-hot ``[N, C]``. Works on a boolean copy (N x C bytes), never a float one.
    """
    y = np.asarray(targets) > 0.5
    counts = np.asarray(class_counts)
    if y.ndim != 2 or y.shape[1] != len(counts):
        raise ValueError(f"targets {y.shape} do not match {len(counts)} class counts")
    rank = np.argsort(counts, kind="stable")  # rarest first, ties by class index
    by_rank = y[:, rank]
    first = by_rank.argmax(axis=1)
    return np.where(by_rank.any(axis=1), rank[first], -1).astype(np.int64)


def effective_distribution(probs: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """``probs`` restricted to the classes some video is filed under, renormalised."""
    present = np.bincount(primary[primary >= 0], minlength=len(probs))[: len(probs)] > 0
    p = np.where(present, probs, 0.0)
    if p.sum() <= 0:
        raise ValueError("no test video has a class the target distribution can draw")
    return p / p.sum()


def resample_indices(
    primary: np.ndarray, probs: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``size`` video indices drawn with replacement: a class from ``probs`` (renormalised over
    the classes that have videos), then one of that class's videos uniformly."""
    p = effective_distribution(probs, primary)
    videos = np.flatnonzero(primary >= 0)
    videos = videos[np.argsort(primary[videos], kind="stable")]  # grouped by primary class
    per_class = np.bincount(primary[primary >= 0], minlength=len(p))
    starts = np.concatenate([[0], np.cumsum(per_class)[:-1]])
    classes = rng.choice(len(p), size=size, p=p)
    return videos[starts[classes] + rng.integers(per_class[classes])]


def _seed_for(seed: int, name: str) -> np.random.Generator:
    # one stream per distribution: adding a distribution does not change another's draws
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def resampled_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    class_counts: Sequence[int] | np.ndarray,
    groups: Mapping[str, np.ndarray] | None,
    distributions: Iterable[str],
    repeats: int = 5,
    seed: int = 0,
    size: int | None = None,
) -> dict[str, dict[str, float]]:
    """``{name: {metric: mean, metric_std: std}}`` over ``repeats`` resampled test sets.

    ``size`` draws per set (default: the split's size). Metrics are :func:`summarize`'s (mAP,
    mAP per group, acc1, acc5); ``_std`` is the sample std over repeats (0 for one repeat). A
    group mean that is NaN in some repeat (none of its classes drawn) is averaged over the
    others.
    """
    if repeats < 1:
        raise ValueError(f"resample repeats must be >= 1, got {repeats}")
    scores = np.asarray(scores, dtype=np.float32)
    targets = np.asarray(targets) > 0.5
    n = len(scores) if size is None else int(size)
    if n < 1:
        raise ValueError(f"resample size must be >= 1, got {n}")
    primary = primary_classes(targets, class_counts)
    out: dict[str, dict[str, float]] = {}
    for name in distributions:
        probs = target_distribution(name, class_counts)
        rng = _seed_for(seed, name)
        runs = []
        for _ in range(repeats):
            idx = resample_indices(primary, probs, n, rng)
            metrics, _ = summarize(scores[idx], targets[idx], groups, skip_absent=True)
            runs.append(metrics)
        out[name] = _mean_std(runs)
    return out


def _mean_std(runs: list[dict[str, float]]) -> dict[str, float]:
    result: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN group: NaN, said above
        for key in runs[0]:
            values = np.array([r[key] for r in runs], dtype=np.float64)
            finite = values[~np.isnan(values)]
            result[key] = float(finite.mean()) if len(finite) else float("nan")
            result[f"{key}_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    return result
