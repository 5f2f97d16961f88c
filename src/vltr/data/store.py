"""The vltr feature store: one HDF5 file per dataset and backbone.

Layout (format version 1, documented in ``docs/format.md``)::

    /features            [N, T, D] float16 (or float32), contiguous and uncompressed by default
    /label_indptr        [N + 1] int64   multi-hot labels in CSR form: the labels of video i are
    /label_indices       [nnz]   int32   label_indices[label_indptr[i]:label_indptr[i + 1]]
    /video_ids           [N]     str
    /class_names         [C]     str
    /splits/{train,val,test}  int64 sorted indices into the N videos
    /nonfinite_videos    [k]     int64   videos holding NaN/Inf, recorded by the writer (optional)
    attrs: format_version, num_classes, frames, dim, backbone, source, vltr_version, store_id

Reading goes through a :mod:`vltr.data.readers` frame reader chosen by ``read_mode``: for the
default layout a ``numpy.memmap`` gather of the sampled frames (``mmap``) or one positional read
per video with read-ahead off (``pread``, for stores bigger than the page cache); ``auto``
chooses by the features' size against the available memory. Chunked or compressed files stay
readable: one whole-video h5py read, then a numpy gather. h5py fancy indexing (~75 videos/s) is
never used.

Writing: :class:`StoreWriter` writes to a temporary name in the target folder and renames on
success, so a killed write never leaves a file that looks complete. The writer gives each store
an identity (``store_id``, a UUID) and records which videos hold NaN/Inf (it sees every value).

Opening checks everything the reader relies on (small arrays only: labels, splits, class names,
the NaN/Inf record), so a bad store fails at start in one line; every later reopen of the file
(a DataLoader worker, a spawned process) checks that it is still the same store
(:meth:`FeatureStore.check_identity`).

Longer than most modules: the store's format is defined in one place -- the reader with its
open-time checks, the writer, and the validator that reports every problem -- so that the three
cannot drift apart.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from vltr import __version__
from vltr.data.readers import FrameReader, check_read_mode, make_reader, resolve_read_mode
from vltr.utils.errors import StoreError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_STR = h5py.string_dtype(encoding="utf-8")
TMP_SUFFIX = ".tmp-vltr"
NONFINITE = "nonfinite_videos"
# what h5py raises on a damaged or truncated file, beyond its own OSError
DAMAGED_FILE_ERRORS = (
    KeyError,
    OSError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    RuntimeError,
    OverflowError,
)


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
    exception; the temporary file is removed on failure, also when the final rename fails, and
    on SIGTERM/SIGHUP under ``vltr-data`` (whose handler turns them into an exception).
    Temporary files of earlier writers of the same path on this host whose process is gone are
    removed first.

    ``store_id`` is the store's identity (default: a new UUID); a writer whose output is fully
    determined by its inputs (the synthetic generator) passes one derived from them, so that
    regenerating an identical file is not a change of store.
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
        store_id: str | None = None,
    ) -> None:
        if dtype not in ("float16", "float32"):
            raise StoreError(f"{path}: feature dtype must be float16 or float32, got {dtype!r}")
        self.path = Path(path)
        self.num_videos, self.frames, self.dim = int(num_videos), int(frames), int(dim)
        if self.frames < 1 or self.dim < 1 or self.num_videos < 0:
            raise StoreError(
                f"{path}: cannot write [{self.num_videos}, {self.frames}, "
                f"{self.dim}] features: frames and dim must be >= 1"
            )
        if self.path.is_dir():
            raise StoreError(
                f"{path}: is a directory; give the store's file name (e.g. "
                f"{self.path / 'features.h5'})"
            )
        self.class_names = [str(c) for c in class_names]
        self.tmp_path = temporary_path(self.path)
        self._file: h5py.File | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.path)
            self._file = h5py.File(self.tmp_path, "w")
        except OSError as e:
            self.tmp_path.unlink(missing_ok=True)
            reason = e.strerror or _first_line(e)
            raise StoreError(f"{path}: cannot write here ({reason})") from None
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
            store_id=store_id or uuid.uuid4().hex,
        )
        self._file.attrs.update(dict(attrs or {}))
        # which videos hold NaN/Inf, from every value written (stored at finish)
        self._nonfinite = np.zeros(self.num_videos, dtype=bool)
        self._finished = False

    def write_features(self, start: int, chunk: np.ndarray, *, finite: bool | None = None) -> None:
        """Write ``[n, T, D]`` videos at ``start``. ``finite=True``: the caller has checked that
        the values (in the store's dtype) hold no NaN/Inf; otherwise they are checked here."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 3 or chunk.shape[1:] != (self.frames, self.dim):
            raise StoreError(
                f"{self.path}: feature chunk has shape {chunk.shape}, "
                f"expected [n, {self.frames}, {self.dim}]"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            values = chunk.astype(self._features.dtype, copy=False)
        self._features[start : start + len(chunk)] = values
        bad = False if finite else not all_finite(values)
        self._nonfinite[start : start + len(chunk)] = (
            ~np.isfinite(values).reshape(len(values), -1).all(axis=1) if bad else False
        )

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
        f.create_dataset(
            "video_ids", data=np.array([str(v) for v in video_ids], dtype=object), dtype=_STR
        )
        f.create_dataset("class_names", data=np.array(self.class_names, dtype=object), dtype=_STR)
        group = f.create_group("splits")
        for name, idx in splits.items():
            group.create_dataset(name, data=np.sort(np.asarray(idx, dtype=np.int64)))
        f.create_dataset(NONFINITE, data=np.flatnonzero(self._nonfinite).astype(np.int64))
        self._finished = True

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
        if exc_type is None and self._finished:
            try:
                if self.path.is_dir():  # made while we wrote
                    raise IsADirectoryError(errno.EISDIR, "is a directory", str(self.path))
                os.replace(self.tmp_path, self.path)
            except OSError as e:
                self.tmp_path.unlink(missing_ok=True)
                raise StoreError(
                    f"{self.path}: cannot put the finished store in place "
                    f"({e.strerror or _first_line(e)}); nothing was written "
                    "there"
                ) from None
        else:
            self.tmp_path.unlink(missing_ok=True)
            if exc_type is None:
                raise StoreError(f"{self.path}: StoreWriter closed before finish() was called")


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """Where a writer of ``path`` writes before the rename: ``.<name>.<host>.<pid>.tmp-vltr`` in
    the same folder (host and pid tell whether its writer still runs)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}{TMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left (a SIGKILL'd import of
    VideoLT leaves ~157 GB): those of this host whose process no longer runs. Files of other
    hosts (a shared file system) are left alone: their writers may still run."""
    path = Path(path)
    prefix = f".{path.name}.{socket.gethostname()}."
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f"{glob.escape(prefix)}*{TMP_SUFFIX}"):
            pid = tmp.name[len(prefix) : -len(TMP_SUFFIX)]
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    size = tmp.stat().st_size
                    tmp.unlink()
                    removed.append(tmp)
                    log.warning(
                        "removed %s (%.1f MB), left by a killed writer (pid %s)",
                        tmp,
                        size / 1e6,
                        pid,
                    )
    return removed


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
    with StoreWriter(
        path,
        num_videos=n,
        frames=t,
        dim=d,
        class_names=class_names,
        dtype=dtype,
        backbone=backbone,
        source=source,
        chunked=chunked,
        compression=compression,
    ) as writer:
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

    Metadata (labels, splits, attributes) is read once at construction and checked there: the
    CSR label index, label and split ranges, the class names against ``num_classes``, the
    writer's NaN/Inf record; the first problem is a one-line :class:`StoreError` (``check=False``
    keeps them in ``problems`` instead, for ``vltr-data validate``). The features are opened on
    first access in the process that reads them (a DataLoader worker), through a memmap when
    the layout allows it, after :meth:`check_identity`. ``expected_dim`` / ``expected_frames``
    turn a mismatch with the ``features`` config into a clear error at start instead of a shape
    error mid-training.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        expected_dim: int | None = None,
        expected_frames: int | None = None,
        check: bool = True,
    ) -> None:
        self.path = Path(path)
        with _open_readonly(self.path) as f:
            try:
                self._read_metadata(f)
                self.problems = self._consistency_problems(f)
                self._identity = self._file_identity(f)
            except StoreError:
                raise
            except DAMAGED_FILE_ERRORS as e:  # h5py on a damaged file
                raise StoreError(
                    f"{self.path}: corrupt or incomplete store ({_first_line(e)})"
                ) from None
        if check and self.problems:
            more = len(self.problems) - 1
            hint = f" (and {more} more problem(s): run vltr-data validate)" if more else ""
            raise StoreError(self.problems[0] + hint)
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
        """What the reader cannot do without; a problem here is raised at once."""
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
            if not isinstance(f[key], h5py.Dataset):
                raise StoreError(f"{self.path}: /{key} is a group, expected a dataset")
        ds = f["features"]
        if ds.ndim != 3:
            raise StoreError(f"{self.path}: /features has shape {ds.shape}, expected [N, T, D]")
        self.num_videos, self.frames, self.dim = (int(s) for s in ds.shape)
        if self.frames < 1 or self.dim < 1:
            raise StoreError(
                f"{self.path}: /features has shape {list(ds.shape)}: no frames or "
                "no feature dimensions"
            )
        self.dtype = np.dtype(ds.dtype)
        if self.dtype not in (np.float16, np.float32):
            raise StoreError(f"{self.path}: /features has dtype {self.dtype}, expected float16/32")
        for key in ("label_indptr", "label_indices"):
            if f[key].ndim != 1 or not np.issubdtype(f[key].dtype, np.integer):
                raise StoreError(
                    f"{self.path}: /{key} is {f[key].dtype} of shape "
                    f"{list(f[key].shape)}, expected a 1-D integer array"
                )
        if f["class_names"].ndim != 1 or not _is_string(f["class_names"].dtype):
            raise StoreError(
                f"{self.path}: /class_names is {f['class_names'].dtype} of shape "
                f"{list(f['class_names'].shape)}, expected one string per class"
            )
        self.num_classes = _int_attr(f, "num_classes", len(f["class_names"]), self.path)
        self.backbone = str(f.attrs.get("backbone", "unknown"))
        self.source = str(f.attrs.get("source", "unknown"))
        self.attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        if f["label_indptr"].shape != (self.num_videos + 1,):
            raise StoreError(
                f"{self.path}: /label_indptr has {f['label_indptr'].size} entries for "
                f"{self.num_videos} videos"
            )
        self.class_names = [_decode(s) for s in self._read_small(f["class_names"])]
        self.label_indptr = self._read_small(f["label_indptr"]).astype(np.int64)
        self.label_indices = self._read_small(f["label_indices"]).astype(np.int64)
        if len(self.label_indptr) != self.num_videos + 1:
            raise StoreError(
                f"{self.path}: /label_indptr has {len(self.label_indptr)} entries for "
                f"{self.num_videos} videos"
            )
        splits = f.get("splits")
        if splits is not None and not isinstance(splits, h5py.Group):
            raise StoreError(
                f"{self.path}: /splits is a dataset, expected a group holding one "
                "index array per split (train, val, test)"
            )
        self.splits = {}
        for name in splits.keys() if splits is not None else []:
            node = splits[name]
            if (
                not isinstance(node, h5py.Dataset)
                or node.ndim != 1
                or not np.issubdtype(node.dtype, np.integer)
            ):
                raise StoreError(
                    f"{self.path}: /splits/{name} is not a 1-D integer array of video indices"
                )
            self.splits[name] = self._read_small(node).astype(np.int64)
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

    def _read_small(self, ds: h5py.Dataset) -> np.ndarray:
        """A small index array, read whole once its stored bytes cover its shape: a damaged
        header that claims 10^9 entries is refused here instead of allocating for them."""
        if ds.chunks is None and ds.size:
            stored = ds.id.get_storage_size()
            if stored < ds.size * min(ds.dtype.itemsize, 8) or stored > os.path.getsize(self.path):
                raise StoreError(
                    f"{self.path}: {ds.name} claims {ds.size} entries but the file "
                    f"holds {stored} bytes for it (corrupt store)"
                )
        return ds[()]

    def _consistency_problems(self, f: h5py.File) -> list[str]:
        """Problems of the index arrays the reader trusts, one line each (cheap: no features)."""
        p = f"{self.path}:"
        problems: list[str] = []
        indptr, indices = self.label_indptr, self.label_indices
        csr_ok = bool(
            indptr[0] == 0 and np.all(np.diff(indptr) >= 0) and indptr[-1] == len(indices)
        )
        if not csr_ok:
            problems.append(
                f"{p} /label_indptr is not a valid CSR index (it must start at 0, "
                f"never decrease and end at {len(indices)}, the number of labels)"
            )
        if len(indices) and (indices.min() < 0 or indices.max() >= self.num_classes):
            bad = np.flatnonzero((indices < 0) | (indices >= self.num_classes))
            where = ""
            if csr_ok:
                where = f" of video index {int(np.searchsorted(indptr, bad[0], side='right') - 1)}"
            more = f" ({len(bad)} labels out of range)" if len(bad) > 1 else ""
            problems.append(
                f"{p} label {int(indices[bad[0]])}{where} is outside [0, {self.num_classes}){more}"
            )
        if len(self.class_names) != self.num_classes:
            problems.append(
                f"{p} {len(self.class_names)} class names for num_classes={self.num_classes}"
            )
        for name, idx in self.splits.items():
            if len(idx) and (idx.min() < 0 or idx.max() >= self.num_videos):
                first = int(idx[(idx < 0) | (idx >= self.num_videos)][0])
                problems.append(
                    f"{p} split {name!r} holds video index {first}, outside [0, {self.num_videos})"
                )
            elif len(np.unique(idx)) != len(idx):
                problems.append(f"{p} split {name!r} lists a video more than once")
        if NONFINITE in f:
            record = f[NONFINITE]
            if (
                not isinstance(record, h5py.Dataset)
                or record.ndim != 1
                or not np.issubdtype(record.dtype, np.integer)
            ):
                problems.append(f"{p} /{NONFINITE} is not a 1-D integer array")
            else:
                bad_videos = self._read_small(record).astype(np.int64)
                for name, idx in self.splits.items():
                    hit = np.intersect1d(idx, bad_videos)
                    if len(hit):
                        problems.append(
                            f"{p} split {name!r} has {len(hit)} video(s) with NaN/Inf features, "
                            f"first at video index {int(hit[0])} (recorded when the store was "
                            "written)"
                        )
        return problems

    @property
    def values_recorded(self) -> bool:
        """True when the writer recorded which videos hold NaN/Inf (checked at open); stores
        written by other tools are found to hold NaN/Inf only when the videos are read."""
        return self._identity.get("nonfinite_recorded", False)

    def _file_identity(self, f: h5py.File) -> dict[str, Any]:
        st = os.stat(self.path)
        store_id = f.attrs.get("store_id")
        return {
            "store_id": None if store_id is None else _attr_value(store_id),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "nonfinite_recorded": NONFINITE in f,
        }

    def check_identity(self) -> None:
        """Fail in one line if the file at ``path`` is no longer the store that was opened.

        Labels, splits and the feature offset were read once, at construction; a process that
        reopens the path (a DataLoader worker, a spawned DDP process) must read the same file,
        or its features would not match those labels (a store rewritten mid-run gave wrong
        metrics with exit 0). Same store: same ``store_id`` and size (stores without an id,
        written by other tools: same size and modification time).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(
                f"{self.path}: the feature store was deleted while this run was using it"
            ) from None
        old = self._identity
        changed = st.st_size != old["size"]
        if not changed and old["store_id"] is None:
            changed = st.st_mtime_ns != old["mtime_ns"]
        elif not changed:
            try:
                with h5py.File(self.path, "r") as f:
                    now = f.attrs.get("store_id")
                    changed = (None if now is None else _attr_value(now)) != old["store_id"]
            except OSError:
                changed = True
        if changed:
            raise StoreError(
                f"{self.path}: the feature store was replaced or modified while this run was "
                "using it (its labels and splits were read from the earlier file); restart the "
                "run on a store that stays in place"
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
            path=str(self.path),
            num_videos=self.num_videos,
            frames=self.frames,
            dim=self.dim,
            num_classes=self.num_classes,
            dtype=str(self.dtype),
            backbone=self.backbone,
            source=self.source,
            split_sizes={k: len(v) for k, v in self.splits.items()},
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
        self.check_identity()
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
            self.check_identity()
            mode = resolve_read_mode(
                self.read_mode,
                self.features_bytes,
                contiguous=self._contiguous,
                source=str(self.path),
            )
            self.read_mode = mode if self._contiguous else self.read_mode
            self._reader = make_reader(
                mode,
                self.path,
                (self.num_videos, self.frames, self.dim),
                self.dtype,
                self._offset,
                self.read_threads,
            )
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


def _is_string(dtype: np.dtype) -> bool:
    return h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU"


def _int_attr(f: h5py.File, name: str, default: int, path: Path) -> int:
    value = f.attrs.get(name, default)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise StoreError(f"{path}: attribute {name}={value!r} is not an integer")
    return int(value)


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

    Checks the format, shapes and dtypes, everything :class:`FeatureStore` checks at open (CSR
    label index, label and split ranges, class names, the writer's NaN/Inf record), video ids,
    missing or empty splits, videos shared by train and val/test, classes without training
    videos and (``scan_values``) non-finite features, scanned in chunks so memory stays flat.
    The file is opened read-only.
    """
    path = Path(path)
    try:
        store = FeatureStore(path, check=False)
    except StoreError as e:
        return [str(e)]
    try:
        return _validate(store, path, scan_values, chunk_videos)
    except DAMAGED_FILE_ERRORS as e:  # h5py on a file damaged beyond what opening reads
        return [f"{path}: corrupt or incomplete store ({_first_line(e)})"]


def _validate(store: FeatureStore, path: Path, scan_values: bool, chunk_videos: int) -> list[str]:
    problems: list[str] = list(store.problems)
    p = f"{path}:"
    with _open_readonly(path) as f:
        if "video_ids" not in f:
            problems.append(f"{p} missing dataset /video_ids")
        elif (
            not isinstance(f["video_ids"], h5py.Dataset)
            or f["video_ids"].ndim != 1
            or not _is_string(f["video_ids"].dtype)
        ):
            problems.append(f"{p} /video_ids is not one string per video")
        elif len(f["video_ids"]) != store.num_videos:
            problems.append(f"{p} {len(f['video_ids'])} video ids for {store.num_videos} videos")
    for name in SPLITS:
        if name not in store.splits:
            problems.append(f"{p} missing split /splits/{name}")
        elif len(store.splits[name]) == 0:
            problems.append(f"{p} split {name!r} is empty")
    for other in ("val", "test"):
        if "train" in store.splits and other in store.splits:
            shared = np.intersect1d(store.splits["train"], store.splits[other])
            if len(shared):
                problems.append(
                    f"{p} {len(shared)} video(s) are in both train and {other}, "
                    f"first video index {int(shared[0])}"
                )
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
