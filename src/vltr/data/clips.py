"""Clip samplers: which frames of each video a batch reads.

One object per rule, called with the dataset's generator for a whole batch at once, so that the
rule lives in one place and the frames a batch reads do not depend on how the batch is read
(per sample, batched, in a worker, or from a resident copy on the device).
"""

from __future__ import annotations

import numpy as np


class ClipSampler:
    """Frame indices for ``n`` videos of ``frames`` frames: ``[n, t]`` int64, or ``None`` for
    all frames in order."""

    #: frames per clip (``None``: all of them)
    clip_frames: int | None = None

    def __call__(self, rng: np.random.Generator, frames: int, n: int) -> np.ndarray | None:
        raise NotImplementedError


class AllFramesClipSampler(ClipSampler):
    """Every frame, in order (evaluation)."""

    def __call__(self, rng: np.random.Generator, frames: int, n: int) -> None:
        return None

    def __repr__(self) -> str:
        return "AllFramesClipSampler()"


class RandomSortedClipSampler(ClipSampler):
    """VideoLT's training rule: ``clip_frames`` indices drawn uniformly *with replacement* from
    ``[0, frames)``, sorted. Drawn as one ``[n, clip_frames]`` array, which gives the same
    numbers as ``n`` draws of ``clip_frames`` in a row from the same generator."""

    def __init__(self, clip_frames: int) -> None:
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
        self.clip_frames = int(clip_frames)

    def __call__(self, rng: np.random.Generator, frames: int, n: int) -> np.ndarray:
        idx = rng.integers(0, frames, size=(n, self.clip_frames))
        idx.sort(axis=1)
        return idx

    def __repr__(self) -> str:
        return f"RandomSortedClipSampler(clip_frames={self.clip_frames})"


def clip_sampler_for(clip_frames: int | None) -> ClipSampler:
    """The training rule for ``clip_frames`` frames, or all frames when it is ``None``."""
    return AllFramesClipSampler() if clip_frames is None else RandomSortedClipSampler(clip_frames)
