"""Streaming datasets and the LightningDataModule over a feature store.

Train: ``clip_frames`` frame indices drawn uniformly *with replacement* and sorted (VideoLT's
training rule, :class:`~vltr.data.clips.RandomSortedClipSampler`). Val/test: all T frames in
order. Each process (main or DataLoader worker) opens the store lazily and owns its RNG, seeded
from the worker seed that Lightning's ``seed_everything(workers=True)`` makes reproducible.

A batch is read in one go (``VideoFeatureDataset.__getitems__``): the clip sampler draws the
frames of all its videos, the store's frame reader (``read_mode``: memmap gather or positional
reads, :mod:`vltr.data.readers`) writes them straight into the batch tensor -- in a DataLoader
worker, a tensor in shared memory, so the batch is written once and not copied again to reach
the training process. With ``resident=cpu|cuda`` the train split is loaded once
(:mod:`vltr.data.resident`) and batches are gathered from it by index in the training process.
The frames and batches are the same in every mode for the same seed.
``next_frames``: training batches also carry, for each sampled frame ``i``, the stored frame
``i + 1`` (``i`` drawn from ``[0, T - 2]``, read in the same batch read), so that motion
``x[i + 1] - x[i]`` is a difference of true adjacent frames, as in evaluation's full sequence.
``train_streams``: several training loaders, each with its own sampler, combined into one
``{name: VideoBatch}`` batch per step (per-expert class distributions, MEDC).

Longer than most modules: the batch types, the dataset's one-read batch path and the
DataModule's loaders (streams, resident mode, samplers) depend on each other's buffer and worker
rules and are read together.
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

from vltr.data.buffers import BatchBufferPool, rebuild_pooled, shared_empty
from vltr.data.clips import ClipSampler, clip_sampler_for
from vltr.data.longtail import group_masks, imbalanced_subset
from vltr.data.readers import check_read_mode
from vltr.data.resident import ResidentFeatures, check_resident
from vltr.data.store import FeatureStore, all_finite
from vltr.data.synthetic import SyntheticSpec, ensure_synthetic
from vltr.utils.errors import ConfigError, StoreError

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

    @classmethod
    def read(
        cls,
        frames: torch.Tensor,
        targets: torch.Tensor,
        index: torch.Tensor,
        next_frames: bool = False,
        mask: torch.Tensor | None = None,
    ) -> Any:
        """A batch from one batch read: ``frames`` is ``[B, t, D]``, or with ``next_frames``
        ``[B, 2t, D]`` (the clip, then each frame's successor; split here as views)."""
        if not next_frames:
            return cls(features=frames, targets=targets, index=index, mask=mask)
        t = frames.shape[1] // 2
        return cls(
            features=frames[:, :t],
            targets=targets,
            index=index,
            mask=mask,
            next_features=frames[:, t:],
        )

    def pin_memory(self) -> VideoBatch:
        """Page-locked copies, for ``DataLoader(pin_memory=True)`` (asynchronous host-to-device
        copies); the DataLoader calls this in its pinning thread."""

        def pin(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.pin_memory()

        return VideoBatch(
            features=self.features.pin_memory(),
            targets=self.targets.pin_memory(),
            index=self.index.pin_memory(),
            mask=pin(self.mask),
            next_features=pin(self.next_features),
        )


class PooledVideoBatch(VideoBatch):
    """A worker's batch held in a :class:`~vltr.data.buffers.BatchBufferPool` slot: pickles as
    the slot's number and is rebuilt as a :class:`VideoBatch` of views into the training
    process's own mapping of that slot (nothing is copied)."""

    pool_handle: tuple[str, int, int, bool] = ("", -1, 0, False)

    def __reduce__(self) -> tuple[Any, ...]:
        pool_id, slot, n, next_frames = self.pool_handle
        # small arrays by value: a tensor would travel as a new shared-memory file descriptor
        mask = None if self.mask is None else self.mask.numpy()
        return rebuild_pooled, (pool_id, slot, n, self.index.numpy(), mask, next_frames)


@dataclass
class VideoSample:
    features: np.ndarray  # [t, D]
    targets: np.ndarray  # [C]
    index: int
    next_features: np.ndarray | None = None  # [t, D]: frame i + 1 of each frame i


class ClipBatch(Sequence[VideoSample]):
    """A batch read in one go; still a sequence of :class:`VideoSample` for collate functions
    that expect one (``collate_videos`` takes the batch as it is)."""

    def __init__(self, batch: VideoBatch, *, finite_checked: bool = False) -> None:
        self.batch = batch
        self.finite_checked = finite_checked

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, k: int) -> VideoSample:  # type: ignore[override]
        b = self.batch
        return VideoSample(
            features=b.features[k].cpu().numpy(),
            targets=b.targets[k].cpu().numpy(),
            index=int(b.index[k]),
        )


_EXPONENT = {
    np.dtype(np.float16): (np.uint16, 0x7C00),
    np.dtype(np.float32): (np.uint32, 0x7F800000),
}
_FINITE_CHUNK = 1 << 18  # elements: the check's scratch buffer stays in cache


def batch_all_finite(x: np.ndarray) -> bool:
    """True when ``x`` (float16/32) has no NaN/Inf: the exponent bits of each value, masked
    into a small reused buffer chunk by chunk (all ones = Inf or NaN). A whole-batch
    ``all_finite`` allocates temporaries the size of the batch; measured here ~2x slower."""
    if x.dtype not in _EXPONENT:
        return all_finite(x)
    uint, mask = _EXPONENT[x.dtype]
    bits = np.ascontiguousarray(x).reshape(-1).view(uint)
    buf = np.empty(min(_FINITE_CHUNK, bits.size), dtype=uint)
    for k in range(0, bits.size, _FINITE_CHUNK):
        chunk = bits[k : k + _FINITE_CHUNK]
        scratch = buf[: len(chunk)]
        np.bitwise_and(chunk, mask, out=scratch)
        if len(scratch) and scratch.max() == mask:
            return False
    return True


def _raise_non_finite(source: str, indices: Sequence[int], features: np.ndarray) -> None:
    bad = [int(i) for i, f in zip(indices, features, strict=True) if not all_finite(f)]
    raise StoreError(
        f"{source}: video index {bad[0]} has NaN/Inf features ({len(bad)} in "
        "this batch; run `vltr-data validate` on the store)"
    )


def collate_videos(samples: Sequence[VideoSample], source: str = "store") -> VideoBatch:
    """Stack samples into a :class:`VideoBatch`; ``source`` names the file in errors. A
    :class:`ClipBatch` (a batch read in one go) is taken as it is, after the same check."""
    if isinstance(samples, ClipBatch):
        batch = samples.batch
        if not samples.finite_checked:
            for tensor in (batch.features, batch.next_features):
                array = None if tensor is None else tensor.numpy()
                if array is not None and not batch_all_finite(array):
                    _raise_non_finite(source, batch.index.tolist(), array)
        return batch
    features = np.stack([s.features for s in samples])
    nexts = [s.next_features for s in samples]
    next_features = None if nexts[0] is None else np.stack(nexts)
    # one vectorised check per batch; NaN/Inf would silently poison the loss and the metrics
    for array in (features, next_features):
        if array is not None and not batch_all_finite(array):
            _raise_non_finite(source, [s.index for s in samples], array)
    return VideoBatch(
        features=torch.from_numpy(features),
        targets=torch.from_numpy(np.stack([s.targets for s in samples])),
        index=torch.tensor([s.index for s in samples], dtype=torch.long),
        next_features=None if next_features is None else torch.from_numpy(next_features),
    )


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype, in_worker: bool) -> torch.Tensor:
    """An uninitialised tensor to fill a batch into: in shared memory in a DataLoader worker
    (sending it to the training process then passes a file descriptor, not the bytes)."""
    return shared_empty(shape, dtype) if in_worker else torch.empty(shape, dtype=dtype)


def multi_hot(store: FeatureStore, videos: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (``[len(videos), C]``, float32) with the videos' multi-hot targets."""
    out[...] = 0.0
    starts, ends = store.label_indptr[videos], store.label_indptr[videos + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(videos)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, store.label_indices[np.repeat(starts, lengths) + offsets]] = 1.0
    return out


_TORCH_DTYPE = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}


class VideoFeatureDataset(Dataset[VideoSample]):
    """Videos of one split. ``clip_frames=None`` reads all frames in order (evaluation);
    ``clip_sampler`` replaces the rule that ``clip_frames`` stands for.

    ``next_frames`` (with a clip): each sample also carries the stored frame ``i + 1`` of every
    sampled frame ``i``; the sampler then draws from ``[0, T - 2]`` so that every sampled frame
    has a successor (no clamped duplicate at the end). Frames and successors are read in one
    batch read of ``2t`` frames per video.
    """

    def __init__(
        self,
        store: FeatureStore,
        split: str,
        clip_frames: int | None = None,
        clip_sampler: ClipSampler | None = None,
        next_frames: bool = False,
    ) -> None:
        self.store = store
        self.split = split
        self.indices = store.split(split)
        self.clip_sampler = clip_sampler or clip_sampler_for(clip_frames)
        self.clip_frames = self.clip_sampler.clip_frames
        self.resident: ResidentFeatures | None = None
        self.buffers: BatchBufferPool | None = None
        self.next_frames = bool(next_frames) and self.clip_frames is not None
        if self.next_frames and store.frames < 2:
            raise StoreError(
                f"{store.path}: dataset.next_frames needs at least 2 frames per "
                f"video, the store has {store.frames}"
            )
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
        idx = self.sampled_frames(1)
        return None if idx is None else idx[0]

    def sampled_frames(self, n: int) -> np.ndarray | None:
        """``[n, t]`` frame indices (None: all frames); with ``next_frames`` drawn from the
        first ``T - 1`` frames, each followed by its successor: ``[n, 2t]``."""
        if not self.next_frames:
            return self.clip_sampler(self.rng, self.store.frames, n)
        idx = self.clip_sampler(self.rng, self.store.frames - 1, n)
        assert idx is not None
        return np.concatenate([idx, idx + 1], axis=1)

    def __getitem__(self, item: int) -> VideoSample:
        i = int(self.indices[item])
        idx = self.frame_indices()
        x = self.store.read(i, idx)  # with next_frames: frames and successors in one read
        nxt = None
        if self.next_frames:
            x, nxt = np.split(x, 2)
        y = np.zeros(self.store.num_classes, dtype=np.float32)
        y[self.store.labels(i)] = 1.0
        return VideoSample(features=x, targets=y, index=i, next_features=nxt)

    def clip_length(self) -> int:
        """Frames read per video: all, the clip, or the clip and its successors."""
        if self.clip_frames is None:
            return self.store.frames
        return 2 * self.clip_frames if self.next_frames else self.clip_frames

    def ensure_buffers(self, batch_size: int, workers: int, prefetch_factor: int = 2) -> None:
        """Reusable batch buffers for a loader of ``batch_size`` with ``workers`` processes
        (made here, in the process that forks them; kept when the current pool fits)."""
        store = self.store
        features = (batch_size, self.clip_length(), store.dim)
        targets = (batch_size, store.num_classes)
        shared = workers > 0
        # the DataLoader keeps prefetch_factor batches per worker in flight (being filled or
        # queued); the training loop holds the current batch and Lightning's look-ahead, one
        # arrives, one more is spare. In-process: the two held, the one being filled, a spare.
        slots = workers * prefetch_factor + 4 if shared else 4
        pool = self.buffers
        if (
            pool is not None
            and pool.shared == shared
            and len(pool) >= slots
            and pool.fits(features, targets)
        ):
            return
        self.buffers = BatchBufferPool(
            slots, features, _TORCH_DTYPE[store.dtype], targets, shared=shared
        )

    def __getitems__(self, items: Sequence[int]) -> ClipBatch:
        """A whole batch: the same frames and values as ``[self[i] for i in items]``, written
        once into a batch buffer (or gathered from the resident split)."""
        store = self.store
        positions = np.asarray(items, dtype=np.int64)
        videos = self.indices[positions]
        n = len(videos)
        frame_idx = self.sampled_frames(n)
        index = torch.from_numpy(videos)
        t = store.frames if frame_idx is None else frame_idx.shape[1]
        shape, targets_shape = (n, t, store.dim), (n, store.num_classes)
        resident = self.resident
        in_worker = torch.utils.data.get_worker_info() is not None
        pool = self.buffers  # host buffers: not for a split resident on a GPU
        slot = None
        host = resident is None or resident.device.type == "cpu"
        if host and pool is not None and pool.fits(shape, targets_shape):
            slot = pool.claim(in_worker)
        features: torch.Tensor | None
        if slot is not None:
            assert pool is not None
            features, targets = pool.views(slot, n)
        else:  # a resident gather allocates on its own device
            targets = batch_tensor(targets_shape, torch.float32, in_worker)
            features = (
                None
                if resident is not None
                else batch_tensor(shape, _TORCH_DTYPE[store.dtype], in_worker)
            )
        multi_hot(store, videos, targets.numpy())
        if resident is not None:
            features = resident.gather(positions, frame_idx, out=features)
            targets = targets.to(features.device, non_blocking=True)
            index = index.to(features.device, non_blocking=True)
            # the resident split was checked for NaN/Inf once, when it was loaded
            return ClipBatch(
                VideoBatch.read(features, targets, index, self.next_frames), finite_checked=True
            )
        assert features is not None
        store.reader.read_batch(features.numpy(), videos, frame_idx)
        if slot is not None and in_worker:
            assert pool is not None
            batch = PooledVideoBatch.read(features, targets, index, self.next_frames)
            batch.pool_handle = (pool.id, slot, n, self.next_frames)
            return ClipBatch(batch)
        return ClipBatch(VideoBatch.read(features, targets, index, self.next_frames))


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


def _select_streams(
    streams: dict[str, SamplerFactory | None] | None, names: Sequence[str] | None
) -> dict[str, SamplerFactory | None] | None:
    if streams is None:  # names alone select nothing (a method's config may name its streams)
        return None
    streams = dict(streams)
    if names is None:
        names = list(streams)
    unknown = [n for n in names if n not in streams]
    if unknown or not names:
        raise ConfigError(
            f"dataset.train_stream_names: {unknown or 'none'} not among "
            f"dataset.train_streams {sorted(streams)}"
        )
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

    ``read_mode``: how the store's frames are read (``auto``, ``mmap``, ``pread``;
    :mod:`vltr.data.readers`), resolved and logged when the store is opened; ``read_threads``:
    with ``pread``, reads in flight per loader process (one thread each). ``resident``:
    ``cpu`` or ``cuda`` loads the train split once (:mod:`vltr.data.resident`) when the train
    loader is first built, in each process that trains (each DDP rank), and gathers batches
    from it in that process (no loader workers); val and test stream from the store.
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
        read_mode: str = "auto",
        read_threads: int = 4,
        resident: str | None = None,
        next_frames: bool = False,
        train_streams: dict[str, SamplerFactory | None] | None = None,
        train_stream_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if path is None and synthetic is None:
            raise ConfigError(
                f"dataset {name}: set dataset.path (a feature store) or dataset.synthetic"
            )
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
            raise ConfigError(
                f"dataset.groups: unknown key(s) {sorted(unknown)} (use head_min, tail_max)"
            )
        self.head_min = int(groups.get("head_min", 500))
        self.tail_max = int(groups.get("tail_max", 100))
        self.sampler_factory = sampler
        if imbalance_ratio is not None and not 0 < imbalance_ratio <= 1:
            raise ConfigError(
                f"dataset.imbalance_ratio must be in (0, 1] or null, got {imbalance_ratio}"
            )
        self.imbalance_ratio = imbalance_ratio
        self.read_mode = check_read_mode(read_mode)
        if int(read_threads) < 1:
            raise ConfigError(f"dataset.read_threads must be >= 1, got {read_threads}")
        self.read_threads = int(read_threads)
        self.resident = check_resident(resident)
        self.next_frames = bool(next_frames)
        self.train_streams = _select_streams(train_streams, train_stream_names)
        if self.train_streams is not None and sampler is not None:
            raise ConfigError(
                "dataset.train_streams (one sampler per stream) cannot be combined "
                "with a strategy's sampler (strategy=cbs/srs)"
            )
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
            self._store = FeatureStore(
                self.resolve_path(),
                expected_dim=self.expected_dim,
                expected_frames=self.expected_frames,
            )
            for split in ("train", "val", "test"):
                if len(self._store.split(split)) == 0:
                    raise StoreError(f"{self._store.path}: split {split!r} is empty")
            if self.imbalance_ratio is not None:
                self._restrict_train(self._store)
            self._store.set_read_mode(self.read_mode, self.read_threads)
            reader = self._store.reader  # resolves auto (and logs why)
            log.info(
                "%s: %s read with read_mode=%s, %d thread(s) per batch",
                self.name,
                self._store.path,
                reader.mode,
                reader.threads,
            )
        return self._store

    def _restrict_train(self, store: FeatureStore) -> None:
        # replaces the in-memory train split of this DataModule's own reader (the file is
        # untouched); everything downstream reads store.split("train")
        train = store.split("train")
        if np.any(np.diff(store.label_indptr)[train] == 0):
            raise StoreError(
                f"{store.path}: dataset.imbalance_ratio needs a label on every training video"
            )
        first = store.label_indices[store.label_indptr[train]]
        n_max = store.attrs.get("imbalance_n_max")
        store.splits["train"] = imbalanced_subset(
            train, first, self.imbalance_ratio, None if n_max is None else int(n_max)
        )
        log.info(
            "%s: imbalance_ratio=%s keeps %d of %d training videos",
            self.name,
            self.imbalance_ratio,
            len(store.splits["train"]),
            len(train),
        )

    def info(self) -> DatasetInfo:
        s = self.store
        return DatasetInfo(
            name=self.name,
            num_classes=s.num_classes,
            frames=s.frames,
            dim=s.dim,
            class_names=list(s.class_names),
            class_counts=s.class_counts("train"),
            head_min=self.head_min,
            tail_max=self.tail_max,
        )

    def setup(self, stage: str | None = None) -> None:
        store = self.store
        self.train_set = VideoFeatureDataset(
            store, "train", clip_frames=self.clip_frames, next_frames=self.next_frames
        )
        self.val_set = VideoFeatureDataset(store, "val")
        self.test_set = VideoFeatureDataset(store, "test")

    # -- resident mode
    def _resident_device(self) -> torch.device:
        trainer = self.trainer
        root = trainer.strategy.root_device if trainer is not None else None
        if self.resident == "cpu":
            return torch.device("cpu")
        if root is not None and root.type != "cuda":
            raise ConfigError(
                f"dataset.resident=cuda needs a GPU trainer (this one runs on "
                f"{root.type}); use dataset.resident=cpu or trainer=gpu"
            )
        if root is None and torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return root if root is not None else torch.device("cuda")

    def _attach_resident(self, dataset: VideoFeatureDataset) -> None:
        if dataset.resident is not None:
            return
        device = self._resident_device()
        trainer = self.trainer
        # every rank of a node holds its own copy; host memory must hold them all at once
        copies = trainer.num_devices if trainer is not None and device.type == "cpu" else 1
        rank_zero = trainer is None or trainer.is_global_zero
        dataset.resident = ResidentFeatures(
            dataset.store,
            dataset.indices,
            device,
            name=dataset.split,
            copies=copies,
            progress=rank_zero,
        ).load()
        if self.num_workers:
            log.info(
                "%s: resident=%s gathers batches in the training process "
                "(num_workers=%d is not used for training)",
                self.name,
                self.resident,
                self.num_workers,
            )

    # -- loaders
    def _loader(
        self,
        dataset: VideoFeatureDataset,
        train: bool,
        sampler_factory: SamplerFactory | None = None,
    ) -> DataLoader[VideoBatch]:
        sampler = None
        if train and sampler_factory is not None:
            sampler = sampler_factory(dataset.store, dataset.indices)
        resident = dataset.resident is not None
        workers = 0 if resident else self.num_workers
        if not resident or dataset.resident.device.type == "cpu":  # type: ignore[union-attr]
            dataset.ensure_buffers(self.batch_size if train else self.eval_batch_size, workers)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=False,
            num_workers=workers,
            # resident batches are on their device already (pinning a CUDA tensor fails)
            pin_memory=self.pin_memory and not resident,
            persistent_workers=self.persistent_workers and workers > 0,
            collate_fn=functools.partial(collate_videos, source=str(dataset.store.path)),
        )

    def train_dataloader(self) -> DataLoader[VideoBatch] | CombinedLoader:
        if self.resident is not None:
            self._attach_resident(self.train_set)
        if self.train_streams is None:
            return self._loader(self.train_set, train=True, sampler_factory=self.sampler_factory)
        # one dataset per stream: each loader its own batch buffers (a resident split is shared)
        return CombinedLoader(
            {
                name: self._loader(self._stream_set(), train=True, sampler_factory=f)
                for name, f in self.train_streams.items()
            },
            mode="min_size",
        )

    def _stream_set(self) -> VideoFeatureDataset:
        train = self.train_set
        stream = VideoFeatureDataset(
            train.store, "train", clip_sampler=train.clip_sampler, next_frames=train.next_frames
        )
        stream.indices = train.indices  # the imbalanced subset, where one is set
        stream.resident = train.resident
        return stream

    def val_dataloader(self) -> DataLoader[VideoBatch]:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader[VideoBatch]:
        return self._loader(self.test_set, train=False)
