"""Paired bootstrap over test videos: is method B's mAP (tail mAP) gain over A real?

Two runs evaluated on the same test videos are compared on the same resampled test sets: each
replicate draws N videos with replacement, both runs are scored on that draw, and the 2.5th and
97.5th percentiles of the replicates' differences B - A are the 95 % interval. The pairing
matters: the test set's own difficulty moves both runs alike and cancels in the difference,
which is why the paired interval is much narrower than two separate seeds' spreads suggest.

AP per class is VideoLT's (tie-aware, as :func:`vltr.evaluation.metrics.average_precision`),
computed on a
replicate through weights (how often each video was drawn) on one ranking per class made once:
a replicate costs two ``bincount`` passes over each class's ranking down to its last positive,
not a sort of the split. A class with no positive in a replicate is left out of that
replicate's means (it is not part of the drawn test set), as in the resampled evaluation; the
point estimates use the same rule, so they equal ``metrics.json`` whenever every class has a
test positive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vltr.data.longtail import GROUP_NAMES
from vltr.evaluation.predictions import Predictions
from vltr.utils.errors import StoreError

METRICS = ("mAP", "mAP_head", "mAP_medium", "mAP_tail")


class WeightedAP:
    """Per-class AP of one score matrix under per-video weights (bootstrap draw counts).

    Built once per run from ``scores [N, C]`` and ``targets [N, C]``: each class's videos are
    ranked once (tied scores form one threshold, as in the tie-aware AP), and only the ranks
    down to the end of the class's last positive threshold are kept. With weights ``w``, AP is
    ``sum_t PW_t * cumPW_t / cumW_t / P`` over the thresholds t holding a positive (``PW_t``:
    positive weight at t; ``cumPW_t``, ``cumW_t``: positive and total weight ranked at or above
    t), which for ``w = 1`` is the split's tie-aware AP. A replicate is one gather and one
    cumulative sum over the kept ranks (integer counts, exact in float64).
    """

    def __init__(self, scores: np.ndarray, targets: np.ndarray) -> None:
        import torch

        targets = np.asarray(targets, dtype=bool)
        n, c = targets.shape
        self.num_videos, self.num_classes = n, c
        # one sort of the whole [C, N] matrix (torch sorts rows in parallel)
        s = torch.as_tensor(np.ascontiguousarray(np.asarray(scores, dtype=np.float32).T))
        s_sorted, order_t = torch.sort(s, dim=1, descending=True, stable=True)
        s_sorted, order = s_sorted.numpy(), order_t.numpy().astype(np.int32)
        y_sorted = np.take_along_axis(np.ascontiguousarray(targets.T), order, axis=1)
        items, pos_items = [], []
        end_at, pos_end_at, seg_class = [], [], []
        offset = pos_offset = 0
        for k in range(c):
            pos = np.flatnonzero(y_sorted[k])
            if len(pos) == 0:
                continue
            row = s_sorted[k]
            # the last rank of each threshold (tie group) that holds a positive
            group_ends = np.flatnonzero(np.r_[row[1:] != row[:-1], True])
            ends = np.unique(group_ends[np.searchsorted(group_ends, pos)])
            kept = ends[-1] + 1
            items.append(order[k, :kept])
            pos_items.append(order[k, pos])
            end_at.append(offset + ends)
            # the last positive at or above each threshold end, in this class's positives
            pos_end_at.append(pos_offset + np.searchsorted(pos, ends, side="right") - 1)
            seg_class.append(np.full(len(ends), k))
            offset += kept
            pos_offset += len(pos)

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        self._items, self._pos_items = cat(items, np.int32), cat(pos_items, np.int32)
        self._end_at, self._pos_end_at = cat(end_at, np.int64), cat(pos_end_at, np.int64)
        self._seg_class = cat(seg_class, np.int64)
        first = (
            np.r_[True, self._seg_class[1:] != self._seg_class[:-1]]
            if len(self._seg_class)
            else np.zeros(0, bool)
        )
        self._first_seg = first
        # where each threshold's class starts in the kept ranks and in the positives
        starts = np.r_[0, np.cumsum([len(x) for x in items])[:-1]] if items else np.zeros(0)
        pos_starts = np.r_[0, np.cumsum([len(x) for x in pos_items])[:-1]] if items else np.zeros(0)
        per_class = np.cumsum(first) - 1
        self._class_start = (
            np.asarray(starts, np.int64)[per_class] if items else np.zeros(0, np.int64)
        )
        self._pos_class_start = (
            np.asarray(pos_starts, np.int64)[per_class] if items else np.zeros(0, np.int64)
        )

    @property
    def work(self) -> int:
        """Ranks touched per replicate (the cost of one :meth:`ap` call)."""
        return len(self._items) + len(self._pos_items)

    @staticmethod
    def _cum_at(values: np.ndarray, at: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Per-class cumulative sums of ``values`` at positions ``at`` (class from ``start``)."""
        cs = np.cumsum(values)
        return cs[at] - np.where(start > 0, cs[np.maximum(start - 1, 0)], 0)

    def ap(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(AP [C], present [C])``: per-class AP under integer ``weights`` (how often each
        video was drawn; default: once each), and which classes have a drawn positive (AP 0
        for the others)."""
        # float64 holds the integer sums exactly (up to 2**53) and gathers and sums faster
        # than int64 here
        w = np.ones(self.num_videos) if weights is None else np.asarray(weights, np.float64)
        cum_w = self._cum_at(w[self._items], self._end_at, self._class_start)
        cum_pos = self._cum_at(w[self._pos_items], self._pos_end_at, self._pos_class_start)
        prev = np.where(self._first_seg, 0, np.r_[0, cum_pos[:-1]])
        step = cum_pos - prev
        with np.errstate(invalid="ignore", divide="ignore"):
            term = np.where(step > 0, step * (cum_pos / np.maximum(cum_w, 1)), 0.0)
        num = np.bincount(self._seg_class, weights=term, minlength=self.num_classes)
        total = np.zeros(self.num_classes)
        last = np.r_[self._first_seg[1:], True] if len(self._first_seg) else self._first_seg
        total[self._seg_class[last]] = cum_pos[last]
        present = total > 0
        ap = np.zeros(self.num_classes)
        ap[present] = num[present] / total[present]
        return ap, present


def _group_means(ap: np.ndarray, present: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    """``[mAP, mAP_head, mAP_medium, mAP_tail]`` over the classes present (NaN if none)."""
    out = []
    for mask in (np.ones_like(present), *(groups[g] for g in GROUP_NAMES)):
        m = mask & present
        out.append(ap[m].mean() if m.any() else np.nan)
    return np.array(out)


@dataclass(frozen=True)
class PairedDifference:
    """One metric of a paired comparison: side means, B - A, and its bootstrap interval."""

    metric: str
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


@dataclass(frozen=True)
class PairedBootstrap:
    """The result of :func:`paired_bootstrap`."""

    differences: list[PairedDifference]
    num_videos: int
    resamples: int
    confidence: float
    seed: int

    def __getitem__(self, metric: str) -> PairedDifference:
        for d in self.differences:
            if d.metric == metric:
                return d
        raise KeyError(metric)


def _aligned(side: Sequence[Predictions], reference: Predictions) -> list[Predictions]:
    for p in side:
        if p.scores.shape[1] != reference.scores.shape[1]:
            raise StoreError(
                f"the runs have {p.scores.shape[1]} and "
                f"{reference.scores.shape[1]} classes: not the same test set"
            )
        if not np.array_equal(p.index, reference.index) or not np.array_equal(
            p.targets, reference.targets
        ):
            raise StoreError(
                "the runs were not evaluated on the same test videos and labels "
                f"({len(p)} and {len(reference)} videos): a paired comparison "
                "needs the same test set"
            )
    return list(side)


def paired_bootstrap(
    a: Sequence[Predictions] | Predictions,
    b: Sequence[Predictions] | Predictions,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PairedBootstrap:
    """Paired bootstrap of B - A over the test videos for mAP and head / medium / tail mAP.

    ``a`` and ``b`` are one run each, or several (seeds of one setting): a side's metric is
    the mean over its runs, on each replicate. Every run must hold the same videos and labels;
    the groups are side A's (its training counts). Replicate r draws from
    ``default_rng([seed, r])``, so results do not depend on ``threads`` (default: all cores);
    ``progress(done, total)`` is called as replicates finish.
    """
    a = [a] if isinstance(a, Predictions) else list(a)
    b = [b] if isinstance(b, Predictions) else list(b)
    if not a or not b:
        raise ValueError("each side needs at least one run")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    reference = a[0]
    a, b = _aligned(a, reference), _aligned(b, reference)
    groups = reference.groups
    models = [[WeightedAP(p.scores, p.targets) for p in side] for side in (a, b)]
    n = len(reference)

    def side_metrics(weights: np.ndarray | None) -> np.ndarray:
        return np.stack(
            [
                np.mean([_group_means(*m.ap(weights), groups) for m in side], axis=0)
                for side in models
            ]
        )  # [2, metrics]

    point = side_metrics(None)

    def replicate(r: int) -> np.ndarray:
        # one generator per replicate: the same draws whatever the number of threads
        draw = np.random.default_rng([seed, r]).integers(0, n, n)
        m = side_metrics(np.bincount(draw, minlength=n).astype(np.float64))
        return m[1] - m[0]

    # numpy's gathers and sums release the GIL: replicates run in parallel in threads
    workers = max(1, min(threads or os.cpu_count() or 1, resamples))
    diffs = np.empty((resamples, len(METRICS)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r, d in enumerate(pool.map(replicate, range(resamples))):
            diffs[r] = d
            if progress is not None:
                progress(r + 1, resamples)
    alpha = (1 - confidence) / 2
    out = []
    for j, metric in enumerate(METRICS):
        col = diffs[:, j][np.isfinite(diffs[:, j])]
        low, high = np.quantile(col, [alpha, 1 - alpha]) if len(col) else (np.nan, np.nan)
        out.append(
            PairedDifference(
                metric=metric,
                a=float(point[0, j]),
                b=float(point[1, j]),
                diff=float(point[1, j] - point[0, j]),
                ci_low=float(low),
                ci_high=float(high),
            )
        )
    return PairedBootstrap(
        differences=out, num_videos=n, resamples=resamples, confidence=confidence, seed=seed
    )
