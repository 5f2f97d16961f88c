"""A store's class distribution: counts per split, head / medium / tail groups, imbalance."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vltr.data.longtail import GROUP_NAMES, group_of_classes, imbalance_ratio
from vltr.data.store import FeatureStore


@dataclass(frozen=True)
class ClassDistribution:
    """Training counts (and val/test counts) per class, with the groups they define."""

    class_names: list[str]
    counts: dict[str, np.ndarray]  # split -> [C] videos carrying each class
    groups: np.ndarray  # [C] "head" / "medium" / "tail", from the train counts
    head_min: int
    tail_max: int

    @property
    def train(self) -> np.ndarray:
        return self.counts["train"]

    @property
    def order(self) -> np.ndarray:
        """Classes by descending training count (ties by class index): the x axis of the
        papers' distribution plots."""
        return np.lexsort((np.arange(len(self.train)), -self.train))

    @property
    def imbalance_ratio(self) -> float:
        """``n_min / n_max`` over the classes that have training videos (MOVE's mu)."""
        return imbalance_ratio(self.train)

    def group_sizes(self) -> dict[str, int]:
        return {g: int((self.groups == g).sum()) for g in GROUP_NAMES}

    def loglog_slope(self) -> float:
        """Least-squares slope of log(count) against log(rank) (a power law's exponent; for
        VideoLT-like exponential profiles the curve bends instead of being a line)."""
        counts = np.sort(self.train[self.train > 0])[::-1].astype(np.float64)
        if len(counts) < 2:
            return float("nan")
        rank = np.arange(1, len(counts) + 1, dtype=np.float64)
        return float(np.polyfit(np.log(rank), np.log(counts), 1)[0])

    def summary(self) -> dict[str, object]:
        return {
            "num_classes": len(self.class_names),
            **{f"{split}_videos_with_label": int(c.sum()) for split, c in self.counts.items()},
            "train_min": int(self.train.min()),
            "train_max": int(self.train.max()),
            "imbalance_ratio": self.imbalance_ratio,
            "groups": self.group_sizes(),
            "group_thresholds": {"head_min": self.head_min, "tail_max": self.tail_max},
        }


def class_distribution(
    store: str | os.PathLike[str] | FeatureStore, head_min: int = 500, tail_max: int = 100
) -> ClassDistribution:
    """The class distribution of a store (a path or an open :class:`FeatureStore`), with
    groups from its training counts (defaults: VideoLT's thresholds; pass the dataset's)."""
    fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
    counts = {
        split: fs.class_counts(split) for split in ("train", "val", "test") if split in fs.splits
    }
    return ClassDistribution(
        class_names=list(fs.class_names),
        counts=counts,
        groups=group_of_classes(counts["train"], head_min, tail_max).astype(str),
        head_min=head_min,
        tail_max=tail_max,
    )
