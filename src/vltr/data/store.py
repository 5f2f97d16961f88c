"""The vltr feature store: one HDF5 file per dataset and backbone.

Layout (format version 1, documented in ``docs/format.md``)::

    /features            [N, T, D] float16 (or float32), contiguous and uncompressed by default
    /label_indptr        [N + 1] int64   multi-hot labels in CSR form: the labels of video i are
    /label_indices       [nnz]   int32   label_indices[label_indptr[i]:label_indptr[i + 1]]
    /video_ids           [N]     str
    /class_names         [C]     str
    /splits/{train,val,test}  int64 sorted indices into the N videos
    attrs: format_version, num_classes, frames, dim, backbone, source, vltr_version

Reading goes through a :mod:`vltr.data.readers` frame reader chosen by ``read_mode``: for the
default layout a ``numpy.memmap`` gather of the sampled frames (``mmap``) or one positional read
per video with read-ahead off (``pread``, for stores bigger than the page cache); ``auto``
chooses by the features' size against the available memory. Chunked or compressed files stay
readable: one whole-video h5py read, then a numpy gather. h5py fancy indexing (~75 videos/s) is
never used.

Writing: :class:`StoreWriter` writes to a temporary name in the target folder and renames on
success, so a killed write never leaves a file that looks complete.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from vltr import __version__
from vltr.data.readers import FrameReader, check_read_mode, make_reader, resolve_read_mode
from vltr.errors import StoreError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_STR = h5py.string_dtype(encoding="utf-8")


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds, read from its attributes and index arrays."""

    path: str
    num_videos: int
    frames: int
    dim: int
    num_classes: int
    dtype: str
    backbone: str
    source: str
    split_sizes: dict[str, int]


# --------------------------------------------------------------------------------------- writing
class StoreWriter:
    """Write a store atomically; use as a context manager.

    >>> with StoreWriter(path, num_videos=N, frames=T, dim=D, class_names=names) as w:
    ...     w.write_features(0, chunk)          # any number of [n, T, D] chunks, in any order
    ...     w.finish(labels=..., video_ids=..., splits={...})

    Nothing appears at ``path`` until ``finish`` has been called and the block exits without an
    exception; the temporary file is removed on failure.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_videos: int,
        frames: int,
        dim: int,
        class_names: Sequence[str],
        dtype: str = "float16",
        backbone: str = "unknown",
        source: str = "unknown",
        chunked: bool = False,
        compression: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        if dtype not in ("float16", "float32"):
            raise StoreError(f"{path}: feature dtype must be float16 or float32, got {dtype!r}")
        self.path = Path(path)
        self.num_videos, self.frames, self.dim = int(num_videos), int(frames), int(dim)
        self.class_names = [str(c) for c in class_names]
        self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp-vltr")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp_path, "w")
        layout: dict[str, Any] = {}
        if chunked or compression:
            layout["chunks"] = (1, self.frames, self.dim)
            layout["compression"] = compression
        self._features = self._file.create_dataset(
            "features", shape=(self.num_videos, self.frames, self.dim), dtype=dtype, **layout
        )
        self._file.attrs.update(
            format_version=FORMAT_VERSION,
            num_classes=len(self.class_names),
            frames=self.frames,
            dim=self.dim,
            backbone=backbone,
            source=source,
            vltr_version=__version__,
        )
        self._file.attrs.update(dict(attrs or {}))
        self._finished = False

    def write_features(self, start: int, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk)
        if chunk.ndim != 3 or chunk.shape[1:] != (self.frames, self.dim):
            raise StoreError(
                f"{self.path}: feature chunk has shape {chunk.shape}, "
                f"expected [n, {self.frames}, {self.dim}]"
            )
        self._features[start : start + len(chunk)] = chunk.astype(self._features.dtype, copy=False)

    def finish(
        self,
        *,
        labels: Sequence[Sequence[int]],
        video_ids: Sequence[str],
        splits: Mapping[str, Sequence[int] | np.ndarray],
    ) -> None:
        if len(labels) != self.num_videos or len(video_ids) != self.num_videos:
            raise StoreError(
                f"{self.path}: {len(labels)} label rows and {len(video_ids)} video ids "
                f"for {self.num_videos} videos"
            )
        lengths = np.fromiter((len(row) for row in labels), dtype=np.int64, count=len(labels))
        indptr = np.zeros(self.num_videos + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.fromiter(
            (int(c) for row in labels for c in row), dtype=np.int32, count=int(indptr[-1])
        )
        f = self._file
        f.create_dataset("label_indptr", data=indptr)
        f.create_dataset("label_indices", data=indices)
        f.create_dataset("video_ids", data=np.array([str(v) for v in video_ids], dtype=object),
                         dtype=_STR)
        f.create_dataset("class_names", data=np.array(self.class_names, dtype=object), dtype=_STR)
        group = f.create_group("splits")
        for name, idx in splits.items():
            group.create_dataset(name, data=np.sort(np.asarray(idx, dtype=np.int64)))
        self._finished = True

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file.close()
        if exc_type is None and self._finished:
            os.replace(self.tmp_path, self.path)
        else:
            self.tmp_path.unlink(missing_ok=True)
            if exc_type is None:
                raise StoreError(f"{self.path}: StoreWriter closed before finish() was called")


def write_store(
    path: str | os.PathLike[str],
    features: np.ndarray,
    *,
    labels: Sequence[Sequence[int]],
    class_names: Sequence[str],
    splits: Mapping[str, Sequence[int] | np.ndarray],
    video_ids: Sequence[str] | None = None,
    dtype: str = "float16",
    backbone: str = "unknown",
    source: str = "unknown",
    chunked: bool = False,
    compression: str | None = None,
) -> Path:
    """Write an in-memory ``[N, T, D]`` array and its labels as a store (atomically)."""
    n, t, d = features.shape
    if video_ids is None:
        video_ids = [f"v{i:07d}" for i in range(n)]
    with StoreWriter(path, num_videos=n, frames=t, dim=d, class_names=class_names, dtype=dtype,
                     backbone=backbone, source=source, chunked=chunked,
                     compression=compression) as writer:
        writer.write_features(0, features)
        writer.finish(labels=labels, video_ids=video_ids, splits=splits)
    return Path(path)


# --------------------------------------------------------------------------------------- reading
def _open_readonly(path: Path) -> h5py.File:
    if not path.exists():
        raise StoreError(f"{path}: no such feature store")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not a readable HDF5 file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class FeatureStore:
    """Read-only access to a store; picklable, opens its file lazily in each process.

    Metadata (labels, splits, attributes) is read once at construction; the features are opened
    on first access in the process that reads them (a DataLoader worker), through a memmap when
    the layout allows it. ``expected_dim`` / ``expected_frames`` turn a mismatch with the
    ``features`` config into a clear error at start instead of a shape error mid-training.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        expected_dim: int | None = None,
        expected_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        with _open_readonly(self.path) as f:
            try:
                self._read_metadata(f)
            except StoreError:
                raise
            except (KeyError, OSError, ValueError, TypeError) as e:
                raise StoreError(
                    f"{self.path}: corrupt or incomplete store ({_first_line(e)})"
                ) from None
        if expected_dim is not None and expected_dim != self.dim:
            raise StoreError(
                f"{self.path}: features have dim {self.dim} but the features config says "
                f"{expected_dim} (choose the matching features=... group)"
            )
        if expected_frames is not None and expected_frames != self.frames:
            raise StoreError(
                f"{self.path}: features have {self.frames} frames per video but the features "
                f"config says {expected_frames}"
            )
        self.read_mode = "auto"
        self.read_threads = 1
        self._reader: FrameReader | None = None

    def _read_metadata(self, f: h5py.File) -> None:
        version = f.attrs.get("format_version")
        if version is None:
            raise StoreError(f"{self.path}: not a vltr feature store (no format_version attribute)")
        if int(version) != FORMAT_VERSION:
            raise StoreError(
                f"{self.path}: unknown store format version {int(version)} "
                f"(this vltr reads version {FORMAT_VERSION})"
            )
        for key in ("features", "label_indptr", "label_indices", "class_names"):
            if key not in f:
                raise StoreError(f"{self.path}: missing dataset /{key}")
        ds = f["features"]
        if ds.ndim != 3:
            raise StoreError(f"{self.path}: /features has shape {ds.shape}, expected [N, T, D]")
        self.num_videos, self.frames, self.dim = (int(s) for s in ds.shape)
        self.dtype = np.dtype(ds.dtype)
        if self.dtype not in (np.float16, np.float32):
            raise StoreError(f"{self.path}: /features has dtype {self.dtype}, expected float16/32")
        self.num_classes = int(f.attrs.get("num_classes", len(f["class_names"])))
        self.backbone = str(f.attrs.get("backbone", "unknown"))
        self.source = str(f.attrs.get("source", "unknown"))
        self.attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        self.class_names = [_decode(s) for s in f["class_names"][()]]
        self.label_indptr = f["label_indptr"][()].astype(np.int64)
        self.label_indices = f["label_indices"][()].astype(np.int64)
        if len(self.label_indptr) != self.num_videos + 1:
            raise StoreError(
                f"{self.path}: /label_indptr has {len(self.label_indptr)} entries for "
                f"{self.num_videos} videos"
            )
        if len(self.label_indices) and (self.label_indices.min() < 0
                                        or self.label_indices.max() >= self.num_classes):
            bad = np.flatnonzero((self.label_indices < 0)
                                 | (self.label_indices >= self.num_classes))[0]
            video = int(np.searchsorted(self.label_indptr, bad, side="right") - 1)
            raise StoreError(
                f"{self.path}: label {int(self.label_indices[bad])} of video index {video} is "
                f"outside [0, {self.num_classes})"
            )
        self.splits = {
            name: f["splits"][name][()].astype(np.int64)
            for name in (f["splits"].keys() if "splits" in f else [])
        }
        # The memmap fast path needs one contiguous, uncompressed block at a known offset, and
        # the file must actually hold all of it (a truncated copy fails here, not mid-epoch).
        offset = ds.id.get_offset()
        nbytes = self.num_videos * self.frames * self.dim * self.dtype.itemsize
        self._contiguous = ds.chunks is None and ds.compression is None and offset is not None
        self._offset = int(offset) if self._contiguous else None
        if self._contiguous and os.path.getsize(self.path) < self._offset + nbytes:
            raise StoreError(
                f"{self.path}: truncated file ({os.path.getsize(self.path)} bytes, features need "
                f"{self._offset + nbytes})"
            )

    # --- pickling: drop open handles; each process reopens on first read
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    @property
    def contiguous(self) -> bool:
        """True when reads go through a numpy memmap (contiguous, uncompressed features)."""
        return self._contiguous

    def info(self) -> StoreInfo:
        return StoreInfo(
            path=str(self.path), num_videos=self.num_videos, frames=self.frames, dim=self.dim,
            num_classes=self.num_classes, dtype=str(self.dtype), backbone=self.backbone,
            source=self.source, split_sizes={k: len(v) for k, v in self.splits.items()},
        )

    def split(self, name: str) -> np.ndarray:
        if name not in self.splits:
            raise StoreError(f"{self.path}: no split {name!r} (has {sorted(self.splits)})")
        return self.splits[name]

    def labels(self, i: int) -> np.ndarray:
        return self.label_indices[self.label_indptr[i] : self.label_indptr[i + 1]]

    def multi_hot(self, indices: np.ndarray) -> np.ndarray:
        """``[len(indices), C]`` float32 multi-hot targets."""
        out = np.zeros((len(indices), self.num_classes), dtype=np.float32)
        for row, i in enumerate(indices):
            out[row, self.labels(int(i))] = 1.0
        return out

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Number of videos of ``split`` that carry each class (multi-label counts each)."""
        in_split = np.zeros(self.num_videos, dtype=bool)
        in_split[self.split(split)] = True
        video_of_label = np.repeat(np.arange(self.num_videos), np.diff(self.label_indptr))
        labels = self.label_indices[in_split[video_of_label]]
        return np.bincount(labels, minlength=self.num_classes)

    def video_ids(self) -> list[str]:
        with _open_readonly(self.path) as f:
            return [_decode(s) for s in f["video_ids"][()]]

    @property
    def features_bytes(self) -> int:
        return self.num_videos * self.frames * self.dim * self.dtype.itemsize

    def set_read_mode(self, mode: str, threads: int | None = None) -> None:
        """``auto``, ``mmap`` or ``pread`` (see :mod:`vltr.data.readers`) and the threads a
        batch read is split over; takes effect at the next read, in every process the store is
        pickled to afterwards."""
        self.read_mode = check_read_mode(mode)
        if threads is not None:
            self.read_threads = max(1, int(threads))
        self.close()

    @property
    def reader(self) -> FrameReader:
        """The frame reader of this process (opened on first use; ``auto`` resolved here)."""
        if self._reader is None:
            mode = resolve_read_mode(self.read_mode, self.features_bytes,
                                     contiguous=self._contiguous, source=str(self.path))
            self.read_mode = mode if self._contiguous else self.read_mode
            self._reader = make_reader(mode, self.path,
                                       (self.num_videos, self.frames, self.dim), self.dtype,
                                       self._offset, self.read_threads)
        return self._reader

    def read(self, i: int, frame_idx: np.ndarray | None = None) -> np.ndarray:
        """Frames of video ``i`` (all, or those at ``frame_idx``) in the store's dtype."""
        return self.reader.read(i, frame_idx)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None


def all_finite(x: np.ndarray) -> bool:
    """True when ``x`` has no NaN/Inf. For float16 a bit test on the exponent (all ones = Inf or
    NaN): ~6x faster than ``np.isfinite``, which has no float16 fast path."""
    if x.dtype == np.float16:
        return not np.any(np.bitwise_and(x.view(np.uint16), 0x7C00) == 0x7C00)
    return bool(np.isfinite(x).all())


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v.item() if isinstance(v, np.generic) else v


def _decode(s: Any) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


# ------------------------------------------------------------------------------------ validation
def validate_store(
    path: str | os.PathLike[str], *, scan_values: bool = True, chunk_videos: int = 256
) -> list[str]:
    """All problems found in a store, one line each (empty when the store is valid).

    Checks the format, shapes and dtypes, label range, split ranges and emptiness, classes without
    training videos and (``scan_values``) non-finite features, scanned in chunks so memory stays
    flat. The file is opened read-only.
    """
    path = Path(path)
    try:
        store = FeatureStore(path)
    except StoreError as e:
        return [str(e)]
    problems: list[str] = []
    p = f"{path}:"
    indptr, indices = store.label_indptr, store.label_indices
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices):
        problems.append(f"{p} /label_indptr is not a valid CSR index (non-monotonic or wrong end)")
    if len(indices) and (indices.min() < 0 or indices.max() >= store.num_classes):
        bad = np.flatnonzero((indices < 0) | (indices >= store.num_classes))
        video = int(np.searchsorted(indptr, bad[0], side="right") - 1)
        problems.append(
            f"{p} {len(bad)} label(s) outside [0, {store.num_classes}), first in video index "
            f"{video} (label {int(indices[bad[0]])})"
        )
    if len(store.class_names) != store.num_classes:
        problems.append(
            f"{p} {len(store.class_names)} class names for num_classes={store.num_classes}"
        )
    with _open_readonly(path) as f:
        if "video_ids" not in f:
            problems.append(f"{p} missing dataset /video_ids")
        elif len(f["video_ids"]) != store.num_videos:
            problems.append(f"{p} {len(f['video_ids'])} video ids for {store.num_videos} videos")
    for name in SPLITS:
        if name not in store.splits:
            problems.append(f"{p} missing split /splits/{name}")
        elif len(store.splits[name]) == 0:
            problems.append(f"{p} split {name!r} is empty")
    for name, idx in store.splits.items():
        if len(idx) and (idx.min() < 0 or idx.max() >= store.num_videos):
            problems.append(f"{p} split {name!r} has indices outside [0, {store.num_videos})")
    if "train" in store.splits and len(store.splits["train"]) and not problems:
        missing = np.flatnonzero(store.class_counts("train") == 0)
        if len(missing):
            names = ", ".join(store.class_names[i] for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            problems.append(f"{p} {len(missing)} class(es) without training videos: {names}{more}")
    if scan_values:
        problems.extend(_scan_non_finite(store, chunk_videos))
    return problems


def _scan_non_finite(store: FeatureStore, chunk_videos: int) -> list[str]:
    bad_videos: list[int] = []
    try:
        with _open_readonly(store.path) as f:
            ds = f["features"]
            for start in range(0, store.num_videos, chunk_videos):
                block = ds[start : start + chunk_videos]
                if all_finite(block):
                    continue
                finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
                bad_videos.extend((start + np.flatnonzero(~finite)).tolist())
    except OSError as e:
        return [f"{store.path}: features unreadable ({_first_line(e)}); the file may be truncated"]
    if not bad_videos:
        return []
    return [
        f"{store.path}: {len(bad_videos)} video(s) with NaN/Inf features, first at index "
        f"{bad_videos[0]}"
    ]
