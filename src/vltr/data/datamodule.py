"""Streaming datasets and the LightningDataModule over a feature store.

Train: ``clip_frames`` frame indices drawn uniformly *with replacement* and sorted (VideoLT's
training rule), read through the store's memmap gather. Val/test: all T frames in order.
``next_frames``: training batches also carry, for each sampled frame ``i``, the stored frame
``i + 1`` (``i`` drawn from ``[0, T - 2]``, read in the same gather), so that motion
``x[i + 1] - x[i]`` is a difference of true adjacent frames, as in evaluation's full sequence.
``train_streams``: several training loaders, each with its own sampler, combined into one
``{name: VideoBatch}`` batch per step (per-expert class distributions, MEDC).
Each process (main or DataLoader worker) opens the store lazily and owns its RNG, seeded from
the worker seed that Lightning's ``seed_everything(workers=True)`` makes reproducible.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Sampler

from vltr.data.longtail import group_masks, imbalanced_subset
from vltr.data.store import FeatureStore, all_finite
from vltr.data.synthetic import SyntheticSpec, ensure_synthetic
from vltr.errors import ConfigError, StoreError

log = logging.getLogger(__name__)


@dataclass
class VideoBatch:
    """A batch of videos. Lightning moves dataclass batches to the device field by field."""

    # [B, T, D] in the store's dtype (float16 by default): half the bytes through worker shared
    # memory and host->device copies; the LightningModule casts after the transfer
    features: torch.Tensor
    targets: torch.Tensor  # [B, C] float32 multi-hot
    index: torch.Tensor  # [B] int64, the videos' indices in the store
    mask: torch.Tensor | None = None  # [B, T] bool, True = a real frame (None: all real)
    # [B, T, D]: the stored frame after each of `features`' frames (dataset.next_frames, in
    # training; None otherwise)
    next_features: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.features.shape[0]


@dataclass
class VideoSample:
    features: np.ndarray  # [t, D]
    targets: np.ndarray  # [C]
    index: int
    next_features: np.ndarray | None = None  # [t, D]: frame i + 1 of each frame i


def collate_videos(samples: Sequence[VideoSample], source: str = "store") -> VideoBatch:
    """Stack samples into a :class:`VideoBatch`; ``source`` names the file in errors."""
    features = np.stack([s.features for s in samples])
    nexts = [s.next_features for s in samples]
    next_features = None if nexts[0] is None else np.stack(nexts)
    # one vectorised check per batch; NaN/Inf would silently poison the loss and the metrics
    for array in (features, next_features):
        if array is not None and not all_finite(array):
            bad = [s.index for s, f in zip(samples, array, strict=True) if not all_finite(f)]
            raise StoreError(f"{source}: video index {bad[0]} has NaN/Inf features ({len(bad)} "
                             "in this batch; run `vltr-data validate` on the store)")
    return VideoBatch(
        features=torch.from_numpy(features),
        targets=torch.from_numpy(np.stack([s.targets for s in samples])),
        index=torch.tensor([s.index for s in samples], dtype=torch.long),
        next_features=None if next_features is None else torch.from_numpy(next_features),
    )


class VideoFeatureDataset(Dataset[VideoSample]):
    """Videos of one split. ``clip_frames=None`` reads all frames in order (evaluation).

    ``next_frames`` (with ``clip_frames``): each sample also carries the stored frame ``i + 1``
    of every sampled frame ``i``; the indices are then drawn from ``[0, T - 2]`` so that every
    sampled frame has a successor (no clamped duplicate at the end).
    """

    def __init__(self, store: FeatureStore, split: str, clip_frames: int | None = None,
                 next_frames: bool = False) -> None:
        self.store = store
        self.split = split
        self.indices = store.split(split)
        self.clip_frames = clip_frames
        self.next_frames = bool(next_frames) and clip_frames is not None
        if self.next_frames and store.frames < 2:
            raise StoreError(f"{store.path}: dataset.next_frames needs at least 2 frames per "
                             f"video, the store has {store.frames}")
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_rng"] = None  # each worker seeds its own
        return state

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            # worker: base_seed + worker id (reproducible under seed_everything(workers=True));
            # main process: drawn from torch's global generator, seeded by seed_everything
            seed = info.seed if info is not None else int(torch.randint(2**62, ()).item())
            self._rng = np.random.default_rng(seed)
        return self._rng

    def frame_indices(self) -> np.ndarray | None:
        if self.clip_frames is None:
            return None
        high = self.store.frames - 1 if self.next_frames else self.store.frames
        return np.sort(self.rng.integers(0, high, size=self.clip_frames))

    def __getitem__(self, item: int) -> VideoSample:
        i = int(self.indices[item])
        idx = self.frame_indices()
        nxt = None
        if self.next_frames:
            # one gather for the frames and their successors
            both = self.store.read(i, np.concatenate([idx, idx + 1]))
            x, nxt = both[: len(idx)], both[len(idx) :]
        else:
            x = self.store.read(i, idx)
        y = np.zeros(self.store.num_classes, dtype=np.float32)
        y[self.store.labels(i)] = 1.0
        return VideoSample(features=x, targets=y, index=i, next_features=nxt)


@dataclass(frozen=True)
class DatasetInfo:
    """What the model side needs to know about the data, without touching the data code."""

    name: str
    num_classes: int
    frames: int
    dim: int
    class_names: list[str]
    class_counts: np.ndarray  # training counts
    head_min: int
    tail_max: int

    @property
    def groups(self) -> dict[str, np.ndarray]:
        return group_masks(self.class_counts, head_min=self.head_min, tail_max=self.tail_max)


SamplerFactory = Callable[[FeatureStore, np.ndarray], Sampler[int]]


def _select_streams(streams: dict[str, SamplerFactory | None] | None,
                    names: Sequence[str] | None) -> dict[str, SamplerFactory | None] | None:
    if streams is None:  # names alone select nothing (a method's config may name its streams)
        return None
    streams = dict(streams)
    if names is None:
        names = list(streams)
    unknown = [n for n in names if n not in streams]
    if unknown or not names:
        raise ConfigError(f"dataset.train_stream_names: {unknown or 'none'} not among "
                          f"dataset.train_streams {sorted(streams)}")
    return {str(n): streams[n] for n in names}


class VideoFeatureDataModule(L.LightningDataModule):
    """Train/val/test loaders over one store (``path``) or the cached synthetic dataset.

    ``synthetic``: a :class:`SyntheticSpec` as a dict; used when ``path`` is null, generated on
    first use under ``data_dir``. ``expected_dim`` / ``expected_frames`` come from the
    ``features`` config and are checked against the file. ``sampler``: an optional factory
    ``(store, train_indices) -> Sampler`` (class-balanced sampling plugs in here).

    ``imbalance_ratio``: restrict the train split to the long-tailed subset of
    :func:`~vltr.data.longtail.imbalanced_subset` (the Imbalanced-MiniKinetics200 recipe; the
    first label of a multi-label video is its class; ``n_max`` is the store's
    ``imbalance_n_max`` attribute when it has one, else the largest class count). Applied once
    when the store is opened, so class counts, groups, the train set and samplers all see the
    subset; val and test are untouched.

    ``next_frames``: training batches carry ``next_features`` (see :class:`VideoFeatureDataset`).
    ``train_streams``: ``{name: sampler factory or None}``; training then yields one
    ``{name: VideoBatch}`` per step from one loader per stream (None: the natural shuffled
    order), combined with Lightning's ``CombinedLoader`` (``min_size``: every stream draws as
    many videos per epoch as the train split has). ``train_stream_names`` picks the streams to
    load (None: all; ignored without ``train_streams``). Not combined with ``sampler``.
    """

    def __init__(
        self,
        name: str,
        path: str | None = None,
        synthetic: dict[str, Any] | None = None,
        data_dir: str = "data",
        expected_dim: int | None = None,
        expected_frames: int | None = None,
        clip_frames: int = 60,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        groups: dict[str, int] | None = None,
        sampler: SamplerFactory | None = None,
        imbalance_ratio: float | None = None,
        next_frames: bool = False,
        train_streams: dict[str, SamplerFactory | None] | None = None,
        train_stream_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if path is None and synthetic is None:
            raise ConfigError(f"dataset {name}: set dataset.path (a feature store) or "
                              "dataset.synthetic")
        self.name = name
        self.path = path
        self.synthetic = SyntheticSpec.from_dict(dict(synthetic)) if path is None else None
        self.data_dir = data_dir
        self.expected_dim = expected_dim
        self.expected_frames = expected_frames
        self.clip_frames = clip_frames
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        groups = dict(groups or {})
        unknown = set(groups) - {"head_min", "tail_max"}
        if unknown:
            raise ConfigError(f"dataset.groups: unknown key(s) {sorted(unknown)} "
                              "(use head_min, tail_max)")
        self.head_min = int(groups.get("head_min", 500))
        self.tail_max = int(groups.get("tail_max", 100))
        self.sampler_factory = sampler
        if imbalance_ratio is not None and not 0 < imbalance_ratio <= 1:
            raise ConfigError(f"dataset.imbalance_ratio must be in (0, 1] or null, "
                              f"got {imbalance_ratio}")
        self.imbalance_ratio = imbalance_ratio
        self.next_frames = bool(next_frames)
        self.train_streams = _select_streams(train_streams, train_stream_names)
        if self.train_streams is not None and sampler is not None:
            raise ConfigError("dataset.train_streams (one sampler per stream) cannot be combined "
                              "with a strategy's sampler (strategy=cbs/srs)")
        self._store: FeatureStore | None = None

    # -- the store
    def resolve_path(self) -> Path:
        if self.synthetic is not None:
            return Path(self.data_dir) / f"synthetic-{self.synthetic.key()}.h5"
        path = Path(os.path.expandvars(os.path.expanduser(str(self.path))))
        return path

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            ensure_synthetic(self.synthetic, self.data_dir)

    @property
    def store(self) -> FeatureStore:
        if self._store is None:
            self.prepare_data()
            self._store = FeatureStore(self.resolve_path(), expected_dim=self.expected_dim,
                                       expected_frames=self.expected_frames)
            for split in ("train", "val", "test"):
                if len(self._store.split(split)) == 0:
                    raise StoreError(f"{self._store.path}: split {split!r} is empty")
            if self.imbalance_ratio is not None:
                self._restrict_train(self._store)
        return self._store

    def _restrict_train(self, store: FeatureStore) -> None:
        # replaces the in-memory train split of this DataModule's own reader (the file is
        # untouched); everything downstream reads store.split("train")
        train = store.split("train")
        if np.any(np.diff(store.label_indptr)[train] == 0):
            raise StoreError(f"{store.path}: dataset.imbalance_ratio needs a label on every "
                             "training video")
        first = store.label_indices[store.label_indptr[train]]
        n_max = store.attrs.get("imbalance_n_max")
        store.splits["train"] = imbalanced_subset(
            train, first, self.imbalance_ratio, None if n_max is None else int(n_max))
        log.info("%s: imbalance_ratio=%s keeps %d of %d training videos", self.name,
                 self.imbalance_ratio, len(store.splits["train"]), len(train))

    def info(self) -> DatasetInfo:
        s = self.store
        return DatasetInfo(name=self.name, num_classes=s.num_classes, frames=s.frames,
                           dim=s.dim, class_names=list(s.class_names),
                           class_counts=s.class_counts("train"), head_min=self.head_min,
                           tail_max=self.tail_max)

    def setup(self, stage: str | None = None) -> None:
        store = self.store
        self.train_set = VideoFeatureDataset(store, "train", clip_frames=self.clip_frames,
                                             next_frames=self.next_frames)
        self.val_set = VideoFeatureDataset(store, "val")
        self.test_set = VideoFeatureDataset(store, "test")

    # -- loaders
    def _loader(self, dataset: VideoFeatureDataset, train: bool,
                sampler_factory: SamplerFactory | None = None) -> DataLoader[VideoBatch]:
        sampler = None
        if train and sampler_factory is not None:
            sampler = sampler_factory(dataset.store, dataset.indices)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=functools.partial(collate_videos, source=str(dataset.store.path)),
        )

    def train_dataloader(self) -> DataLoader[VideoBatch] | CombinedLoader:
        if self.train_streams is None:
            return self._loader(self.train_set, train=True, sampler_factory=self.sampler_factory)
        return CombinedLoader({name: self._loader(self.train_set, train=True, sampler_factory=f)
                               for name, f in self.train_streams.items()}, mode="min_size")

    def val_dataloader(self) -> DataLoader[VideoBatch]:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader[VideoBatch]:
        return self._loader(self.test_set, train=False)
