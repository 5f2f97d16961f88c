"""Re-sampling for long-tailed training: class-balanced (CBS) and square-root (SRS) sampling.

Both draw a class first, then a video of that class uniformly (VideoLT's description of CBS:
"it takes a random class and then randomly samples a video"); a multi-label video is in the
pool of each of its classes. The class is drawn with probability proportional to n_c^power:
``power=0`` is CBS (uniform over classes), ``power=0.5`` is SRS, ``power=1`` recovers
label-frequency sampling. ``reverse=True`` then reverses the class probabilities in rank
(:func:`~vltr.data.longtail.reversed_by_rank`): with ``power=1`` the most frequent class gets
the rarest class's frequency and so on, MEDC's inversely long-tailed distribution
``resort(omega)``.

DDP: the sampler is a :class:`DistributedSampler`, so Lightning uses it as it is. Every rank
generates the same epoch sequence (seeded by ``seed`` and the epoch) and takes the positions
``rank, rank + world, ...``: the ranks' draws are disjoint shares of one sequence, and their
union is exactly what one process would draw. Draws are with replacement, as in the papers.

Left as released-code behaviour we do *not* copy: VideoLT's CBS script also masks the loss of a
sampled video's other (co-occurring) labels and sums the loss over classes; vltr keeps all
labels positive and the strategy's usual loss reduction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from vltr.data.longtail import reversed_by_rank
from vltr.data.store import FeatureStore


class ClassAwareSampler(DistributedSampler):
    """Draw ``num_samples`` dataset positions per epoch, class first (p_c ∝ n_c^power, or
    those probabilities reversed in rank with ``reverse``)."""

    def __init__(
        self,
        store: FeatureStore,
        indices: np.ndarray,
        power: float = 0.0,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        reverse: bool = False,
    ) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else 0
        # DistributedSampler's own bookkeeping (epoch, rank, world); its dataset is unused
        super().__init__(
            range(len(indices)),
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
        self.power = float(power)
        self.reverse = bool(reverse)
        total = int(num_samples) if num_samples is not None else len(indices)
        self.total_size = math.ceil(total / num_replicas) * num_replicas
        self.num_samples = self.total_size // num_replicas
        # pools: dataset positions (0..len(indices)-1) of the videos carrying each class
        indptr, labels = store.label_indptr, store.label_indices
        rows = np.asarray(indices)
        per_video = [labels[indptr[i] : indptr[i + 1]] for i in rows]
        position = np.repeat(np.arange(len(rows)), [len(p) for p in per_video])
        flat = np.concatenate(per_video) if per_video else np.zeros(0, dtype=np.int64)
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=store.num_classes)
        self.pool_positions = position[order]  # grouped by class
        self.pool_starts = np.concatenate([[0], np.cumsum(counts)])
        self.class_counts = counts
        present = counts > 0  # a class without training videos cannot be drawn
        weights = np.zeros(len(counts), dtype=np.float64)
        weights[present] = counts[present].astype(np.float64) ** self.power
        if self.reverse:  # among the classes that can be drawn
            weights[present] = reversed_by_rank(weights[present])
        self.class_probs = weights / weights.sum()

    def epoch_sequence(self) -> np.ndarray:
        """The whole epoch's draws (identical on every rank)."""
        # two streams, so the sequence's prefix does not depend on its length: a run on W ranks
        # draws the first draws of a 1-process run (up to the padding to a multiple of W)
        class_rng = np.random.default_rng([self.seed, self.epoch, 0])
        video_rng = np.random.default_rng([self.seed, self.epoch, 1])
        classes = class_rng.choice(len(self.class_probs), size=self.total_size, p=self.class_probs)
        start = self.pool_starts[classes]
        size = self.pool_starts[classes + 1] - start
        pick = (video_rng.random(self.total_size) * size).astype(np.int64)
        return self.pool_positions[start + pick]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_sequence()[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
