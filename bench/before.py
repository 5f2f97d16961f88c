"""The train loader as it was before batched reads, kept as the benches' baseline ("today").

One ``__getitem__`` per video: VideoLT's frame draw, a fancy-index gather from the store's
``np.memmap`` (what ``FeatureStore.read`` did), a fresh multi-hot row; the collate function
stacks the samples, checks the whole batch for NaN/Inf and wraps it in a ``VideoBatch``; the
DataLoader is built as ``VideoFeatureDataModule`` built it (shuffle, persistent workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vltr.data.datamodule import VideoBatch, VideoFeatureDataset, VideoSample
from vltr.data.store import FeatureStore, all_finite
from vltr.utils.errors import StoreError


class BeforeDataset(VideoFeatureDataset):
    """Per-sample reads through a memmap (the DataLoader fetches sample by sample)."""

    __getitems__ = None  # type: ignore[assignment]

    def __init__(self, store: FeatureStore, split: str, clip_frames: int | None) -> None:
        super().__init__(store, split, clip_frames=clip_frames)
        self._mm: np.memmap | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_mm"] = None
        return state

    def __getitem__(self, item: int) -> VideoSample:
        store = self.store
        i = int(self.indices[item])
        if self._mm is None:
            self._mm = np.memmap(
                store.path,
                dtype=store.dtype,
                mode="r",
                offset=store._offset,
                shape=(store.num_videos, store.frames, store.dim),
            )
        video = self._mm[i]
        if self.clip_frames is None:
            x = np.array(video)
        else:
            x = video[np.sort(self.rng.integers(0, store.frames, size=self.clip_frames))]
        y = np.zeros(store.num_classes, dtype=np.float32)
        y[store.labels(i)] = 1.0
        return VideoSample(features=x, targets=y, index=i)


def before_collate(samples: Sequence[VideoSample]) -> VideoBatch:
    features = np.stack([s.features for s in samples])
    if not all_finite(features):
        raise StoreError("NaN/Inf features")
    return VideoBatch(
        features=torch.from_numpy(features),
        targets=torch.from_numpy(np.stack([s.targets for s in samples])),
        index=torch.tensor([s.index for s in samples], dtype=torch.long),
    )


def before_loader(
    store: FeatureStore, clip_frames: int, batch_size: int, workers: int
) -> DataLoader:
    return DataLoader(
        BeforeDataset(store, "train", clip_frames),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=before_collate,
    )
